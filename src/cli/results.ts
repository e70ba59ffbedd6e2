/** Where results go: stdout (with back-pressure, so large batches do not buffer in memory) or an atomic --output file. */
import { once } from 'node:events';
import { openAtomicFile } from '../io/atomic.js';
import type { CliContext } from './context.js';

export interface ResultSink {
  write(text: string): Promise<void>;
  /** ok: commit the --output file; otherwise remove it. */
  close(ok: boolean): Promise<void>;
}

export async function openResultSink(ctx: CliContext, output: string | undefined): Promise<ResultSink> {
  if (output) {
    const file = await openAtomicFile(output);
    return { write: (t) => file.write(t), close: (ok) => (ok ? file.commit() : file.abort()) };
  }
  return {
    async write(text) {
      if (!ctx.stdout.write(text)) await once(ctx.stdout, 'drain');
    },
    async close() {},
  };
}
