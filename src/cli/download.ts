import type { Command } from 'commander';
import { contextFrom } from './context.js';
import { integerOption } from './numbers.js';

interface RawDownloadOptions {
  revision?: string;
  include?: string[];
  exclude?: string[];
  cacheDir?: string;
  localDir?: string;
  token?: string;
  all?: boolean;
  offline?: boolean;
  maxWorkers: number;
}

const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

export function registerDownload(program: Command): void {
  program
    .command('download')
    .description('download a Hub repo (what tfhf needs to run it, or chosen files) into the Hugging Face cache')
    .argument('<repo_id>', 'Hub repo id, org/name[@revision]')
    .argument('[files...]', 'only these files of the repo')
    .option('--revision <rev>', 'branch, tag, commit or refs/pr/N (default: main)')
    .option('--include <glob>', 'files matching this glob (repeatable; * crosses /)', collect)
    .option('--exclude <glob>', 'skip files matching this glob (repeatable)', collect)
    .option('--all', 'every file of the repo, not just what tfhf needs')
    .option('--cache-dir <dir>', 'cache directory (default: HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub)')
    .option('--local-dir <dir>', 'also copy the files to this directory and print it instead of the snapshot')
    .option('--token <token>', 'Hub token (default: HF_TOKEN or $HF_HOME/token); sent only to the Hub endpoint')
    .option('--offline', 'no network: only check the cache (like HF_HUB_OFFLINE=1)')
    .option('--max-workers <n>', 'files downloaded in parallel', integerOption('--max-workers', 1), 8)
    .action(async (repoId: string, files: string[], opts: RawDownloadOptions, cmd: Command) => {
      const ctx = contextFrom(cmd);
      const { runDownload } = await import('../commands/download.js');
      const result = await runDownload({ repoId, files, ...opts, log: ctx.log });
      ctx.stdout.write(`${result.path}\n`);
    });
}
