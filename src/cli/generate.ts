import type { Command } from 'commander';
import { Option } from 'commander';
import type { EarlyStopping, GenerationOptions } from '../generation/index.js';
import { UsageError } from '../errors.js';
import { contextFrom } from './context.js';
import { addInputOptions, readInputs } from './inputs.js';
import { floatOption, integerOption } from './numbers.js';
import { openResultSink } from './results.js';
import { DEFAULT_T5_MODEL } from './tokenize.js';

/** Generation flags parse straight to GenerationOptions' types; the ones redeclared below are the exceptions. */
interface RawGenerateOptions extends Omit<GenerationOptions, 'earlyStopping' | 'eosTokenId'> {
  model: string;
  input?: string;
  field?: string;
  output?: string;
  json?: boolean;
  stream?: boolean;
  batchSize: number;
  /** Required here: the flag has a default. */
  maxNewTokens: number;
  earlyStopping?: string | boolean;
  /** The flag is repeatable. */
  eosTokenId?: number[];
}

function earlyStopping(value: string | boolean | undefined): EarlyStopping | undefined {
  if (value === undefined) return undefined;
  if (value === true || value === 'true') return true;
  if (value === 'false') return false;
  if (value === 'never') return 'never';
  throw new UsageError(`--early-stopping must be true, false or never (got '${String(value)}')`);
}

/** Only what the user set: the rest comes from generation_config.json, as with transformers' generate(). */
function generationOptions(o: RawGenerateOptions): GenerationOptions {
  const out: GenerationOptions = { maxNewTokens: o.maxNewTokens };
  const set = <K extends keyof GenerationOptions>(key: K, value: GenerationOptions[K] | undefined): void => {
    if (value !== undefined) out[key] = value;
  };
  set('minNewTokens', o.minNewTokens);
  set('numBeams', o.numBeams);
  set('lengthPenalty', o.lengthPenalty);
  set('earlyStopping', earlyStopping(o.earlyStopping));
  set('numReturnSequences', o.numReturnSequences);
  set('doSample', o.doSample);
  set('temperature', o.temperature);
  set('topK', o.topK);
  set('topP', o.topP);
  set('seed', o.seed);
  set('repetitionPenalty', o.repetitionPenalty);
  set('noRepeatNgramSize', o.noRepeatNgramSize);
  if (o.eosTokenId) out.eosTokenId = o.eosTokenId.length === 1 ? (o.eosTokenId[0] as number) : o.eosTokenId;
  return out;
}

const collectInts = (name: string) => {
  const parse = integerOption(name);
  return (value: string, previous: number[] | undefined): number[] => [...(previous ?? []), parse(value)];
};

export function registerGenerate(program: Command): void {
  const command = program
    .command('generate')
    .description('generate text with a T5 / FLAN-T5 / FLAN-UL2 model, as transformers generate() would')
    .argument('[prompt...]', 'prompts (default: one per line from stdin)')
    .option('-m, --model <model>', 'local model directory (Hub layout or converted) or Hub id', DEFAULT_T5_MODEL);
  addInputOptions(command)
    .option('-o, --output <file>', 'write results to FILE (atomically) instead of stdout')
    .option('--json', 'one JSON object per input: {"index", "prompt", "text", "token_ids"}')
    .option('--stream', 'print text as it is generated (default: on a terminal, for a single prompt)')
    .option('--no-stream', 'print each result only when it is complete')
    .option('--batch-size <n>', 'inputs generated together', integerOption('--batch-size', 1), 8)
    .option('--max-new-tokens <n>', 'tokens to generate at most', integerOption('--max-new-tokens', 1), 256)
    .option('--min-new-tokens <n>', 'suppress end-of-sequence until this many tokens', integerOption('--min-new-tokens'))
    .option('--num-beams <n>', 'beam search with n beams (1: greedy or sampling)', integerOption('--num-beams', 1))
    .option('--length-penalty <x>', 'beam search: exponent of the length normalisation', floatOption('--length-penalty'))
    .addOption(new Option('--early-stopping [when]', 'beam search stopping rule: true, false or never').argParser((v) => v))
    .option('--num-return-sequences <n>', 'sequences returned per input', integerOption('--num-return-sequences', 1))
    .option('--do-sample', 'sample instead of greedy / beam search')
    .option('--temperature <x>', 'sampling temperature (> 0)', floatOption('--temperature'))
    .option('--top-k <n>', 'sample from the k most likely tokens (0: off)', integerOption('--top-k'))
    .option('--top-p <x>', 'nucleus sampling: smallest set with probability >= p, in (0, 1]', floatOption('--top-p'))
    .option('--seed <n>', 'seed for sampling (same seed, same output)', integerOption('--seed'))
    .option('--repetition-penalty <x>', 'penalise tokens already generated (> 0; 1: off)', floatOption('--repetition-penalty'))
    .option('--no-repeat-ngram-size <n>', 'never repeat an n-gram of this size', integerOption('--no-repeat-ngram-size'))
    .option('--eos-token-id <id>', 'end-of-sequence id overriding the checkpoint (repeatable)', collectInts('--eos-token-id'))
    .action(async (prompts: string[], opts: RawGenerateOptions, cmd: Command) => {
      const ctx = contextFrom(cmd);
      const { runGenerate } = await import('../commands/generate.js');
      const sink = await openResultSink(ctx, opts.output);
      let ok = false;
      try {
        await runGenerate(
          {
            model: opts.model,
            backend: ctx.backend,
            log: ctx.log,
            generation: generationOptions(opts),
            batchSize: opts.batchSize,
            json: opts.json === true,
            stream: opts.stream,
          },
          readInputs(prompts, opts),
          (text) => sink.write(text),
          ctx.stdoutIsTTY && !opts.output,
        );
        ok = true;
      } finally {
        await sink.close(ok);
      }
    });
}
