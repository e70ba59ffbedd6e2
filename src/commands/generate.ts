/** `tfhf generate`: prompts → generated texts, batched, in input order; streamed on a terminal. */
import type { BackendChoice } from '../backend/choice.js';
import type { GenerationOptions } from '../generation/index.js';
import type { Log } from '../log.js';
import { openModelDir } from '../pipelines/model-dir.js';
import { generationConfigOf, Text2TextPipeline, type GeneratedText } from '../pipelines/text2text.js';

export interface GenerateCommandOptions {
  model: string;
  backend: BackendChoice;
  log: Log;
  generation: GenerationOptions;
  batchSize: number;
  json: boolean;
  /** Print text deltas as they are produced (needs one input, one sequence, no beams). */
  stream: boolean | undefined;
}

export interface PromptInput {
  index: number;
  text: string;
}

/** Writes one result; `write` applies back-pressure. */
export type Write = (text: string) => Promise<void>;

function render(json: boolean, input: PromptInput, sequences: GeneratedText[]): string {
  if (json) {
    const base = { index: input.index, prompt: input.text };
    if (sequences.length === 1) {
      const [s] = sequences as [GeneratedText];
      return `${JSON.stringify({ ...base, text: s.text, token_ids: s.tokenIds })}\n`;
    }
    const seqs = sequences.map((s) => ({ text: s.text, token_ids: s.tokenIds, ...(s.score === undefined ? {} : { score: s.score }) }));
    return `${JSON.stringify({ ...base, sequences: seqs })}\n`;
  }
  return sequences.map((s) => `${s.text}\n`).join('');
}

export async function runGenerate(
  options: GenerateCommandOptions,
  inputs: AsyncIterable<PromptInput>,
  write: Write,
  canStream: boolean,
): Promise<void> {
  const { log } = options;
  const modelDir = await openModelDir(options.model);
  // Option mistakes are reported before the weights are loaded, which takes long for big models.
  const config = generationConfigOf(modelDir, options.generation);
  for (const w of config.warnings) log.notice(w);
  const singleSequence = config.numBeams === 1 && config.numReturnSequences === 1;
  if (options.stream === true && (!singleSequence || options.json)) {
    log.notice('--stream applies to a single sequence without beams or --json; printing complete results instead');
  }
  const pipeline = await Text2TextPipeline.load(modelDir, { backend: options.backend, log });
  try {
    let limited = 0;
    const note = (input: PromptInput, seqs: GeneratedText[]): void => {
      if (seqs.some((s) => s.stoppedAtLimit)) {
        limited++;
        log.notice(`input ${input.index}: output stopped at --max-new-tokens ${config.maxNewTokens}`);
      }
    };
    let batch: PromptInput[] = [];
    const flush = async (): Promise<void> => {
      if (batch.length === 0) return;
      const t0 = performance.now();
      const results = await pipeline.run(batch.map((b) => b.text), config);
      log.verbose(`batch of ${batch.length} in ${(performance.now() - t0).toFixed(0)} ms`);
      for (const [i, input] of batch.entries()) {
        const seqs = results[i] as GeneratedText[];
        note(input, seqs);
        await write(render(options.json, input, seqs));
      }
      batch = [];
    };
    const add = async (input: PromptInput): Promise<void> => {
      batch.push(input);
      if (batch.length >= options.batchSize) await flush();
    };
    const streamOne = async (input: PromptInput): Promise<void> => {
      const gen = pipeline.stream(input.text, config);
      let next = await gen.next();
      while (!next.done) {
        await write(next.value);
        next = await gen.next();
      }
      await write('\n');
      note(input, [next.value]);
    };
    const streamable = !options.json && singleSequence && options.stream !== false;
    const iterator = inputs[Symbol.asyncIterator]();
    const next = (): Promise<IteratorResult<PromptInput>> => iterator.next();
    if (streamable && options.stream === true) {
      // Asked for: every input streams, one at a time (no batching).
      for (let r = await next(); !r.done; r = await next()) await streamOne(r.value);
    } else if (streamable && canStream) {
      // On a terminal a lone prompt streams; with a second one, everything is batched.
      const a = await next();
      const b = a.done ? a : await next();
      if (!a.done && b.done) await streamOne(a.value);
      if (!a.done && !b.done) {
        await add(a.value);
        await add(b.value);
        for (let r = await next(); !r.done; r = await next()) await add(r.value);
      }
    } else {
      for (let r = await next(); !r.done; r = await next()) await add(r.value);
    }
    await flush();
    if (limited > 1) log.notice(`${limited} outputs stopped at the token limit; raise --max-new-tokens for longer ones`);
  } finally {
    pipeline.dispose();
  }
}
