import type { Command } from 'commander';
import { contextFrom } from './context.js';
import { TFHF_VERSION } from '../version.js';

export function registerEnv(program: Command): void {
  program
    .command('env')
    .description('print versions, backend, threads and cache directory (for bug reports)')
    .option('--json', 'print one JSON object')
    .action(async (opts: { json?: boolean }, command: Command) => {
      const ctx = contextFrom(command);
      // Imported here so that commands without a model never pay for loading TensorFlow.js.
      const { collectEnv } = await import('../commands/env.js');
      // The report states the fallback itself, so the notice would only repeat it.
      const report = await collectEnv(TFHF_VERSION, ctx.backend, { notice: () => {}, verbose: ctx.log.verbose });
      if (opts.json) {
        ctx.stdout.write(`${JSON.stringify(report)}\n`);
        return;
      }
      const rows: [string, string][] = [
        ['tfhf version', report.tfhf],
        ['Node.js version', report.node],
        ['Platform', report.platform],
        ['CPUs', String(report.cpus)],
        ['Memory', `${report.memoryGiB} GiB`],
        ['TensorFlow.js core', report.tfjsCore],
        ['Backend', report.backend],
        ['Backend threads', String(report.backendThreads)],
        ['Native backend (tfjs-node-gpu)', report.nativeBackend],
        ['Hub cache', report.hubCache],
        ['Hub endpoint', report.hfEndpoint],
        ['Offline (HF_HUB_OFFLINE)', report.offline ? 'yes' : 'no'],
      ];
      ctx.stdout.write(rows.map(([k, v]) => `- ${k}: ${v}`).join('\n') + '\n');
    });
}
