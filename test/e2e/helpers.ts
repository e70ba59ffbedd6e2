import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { projectRoot } from '../helpers/shared.js';

export const BIN = join(projectRoot, 'bin', 'tfhf.js');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs bin/tfhf.js as a user would, colour off, optional stdin. */
export function tfhf(args: string[], options: { env?: NodeJS.ProcessEnv; input?: string | Buffer } = {}): RunResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1', ...options.env },
    input: options.input ?? '',
    timeout: 120_000,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
