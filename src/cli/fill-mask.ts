import type { Command } from 'commander';
import { contextFrom } from './context.js';
import { addInputOptions, readInputs } from './inputs.js';
import { integerOption } from './numbers.js';
import { openResultSink } from './results.js';

export const DEFAULT_FILL_MASK_MODEL = 'flaubert/flaubert_base_cased';

interface RawFillMaskOptions {
  model: string;
  input?: string;
  field?: string;
  output?: string;
  json?: boolean;
  topK?: number;
  targets?: string[];
  batchSize: number;
  lowercase?: boolean;
  maxNewTokens: number;
}

/** `--targets a,b --targets c` → [a, b, c]; empty items are dropped. */
function collectWords(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), ...value.split(',').filter((w) => w !== '')];
}

export function registerFillMask(program: Command): void {
  const command = program
    .command('fill-mask')
    .description("predict masked words (FlauBERT) as transformers' fill-mask pipeline; T5 models fill <mask> spans by generation")
    .argument('[text...]', 'texts with the mask token (<special1> for FlauBERT) or <mask> (default: one per line from stdin)')
    .option('-m, --model <model>', 'local model directory (Hub layout or converted) or Hub id', DEFAULT_FILL_MASK_MODEL);
  addInputOptions(command)
    .option('-o, --output <file>', 'write results to FILE (atomically) instead of stdout')
    .option('--json', 'one JSON object per input: {"index", "text", "masks": [[{"token", "token_str", "score", "sequence"}, ...], ...]}')
    .option('-k, --top-k <n>', 'predictions per mask (default: 5)', integerOption('--top-k', 1))
    .option('--targets <words>', 'score only these words, comma-separated (repeatable); others are replaced by their first token', collectWords)
    .option('--batch-size <n>', 'inputs run together', integerOption('--batch-size', 1), 8)
    .option('--lowercase', 'FlauBERT: lower-case like the uncased models were trained (transformers ignores do_lower_case)')
    .option('--max-new-tokens <n>', 'T5 span filling: tokens to generate at most', integerOption('--max-new-tokens', 1), 64)
    .action(async (texts: string[], opts: RawFillMaskOptions, cmd: Command) => {
      const ctx = contextFrom(cmd);
      const { runFillMask } = await import('../commands/fill-mask.js');
      const sink = await openResultSink(ctx, opts.output);
      let ok = false;
      try {
        await runFillMask(
          {
            model: opts.model,
            backend: ctx.backend,
            log: ctx.log,
            topK: opts.topK,
            targets: opts.targets,
            batchSize: opts.batchSize,
            format: opts.json ? 'json' : ctx.stdoutIsTTY && !opts.output ? 'human' : 'plain',
            color: ctx.stdoutColor,
            doLowercase: opts.lowercase === true ? true : undefined,
            maxNewTokens: opts.maxNewTokens,
          },
          readInputs(texts, opts),
          (text) => sink.write(text),
        );
        ok = true;
      } finally {
        await sink.close(ok);
      }
    });
}
