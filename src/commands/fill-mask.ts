/**
 * `tfhf fill-mask`: texts with a mask → the most likely tokens per mask (FlauBERT, transformers' fill-mask
 * pipeline), batched, in input order; on a T5-family model, `<mask>` / `<extra_id_N>` spans filled by generation.
 */
import type { ChalkInstance } from 'chalk';
import type { BackendChoice } from '../backend/choice.js';
import { UsageError } from '../errors.js';
import type { Log } from '../log.js';
import { FillMaskPipeline, SpanFillPipeline, type FillMaskPrediction, type SpanFillResult } from '../pipelines/fill-mask.js';
import { openModelDir } from '../pipelines/model-dir.js';

export type FillMaskFormat = 'json' | 'human' | 'plain';

export interface FillMaskCommandOptions {
  model: string;
  backend: BackendChoice;
  log: Log;
  /** Predictions per mask; undefined = 5 (transformers' default). */
  topK: number | undefined;
  /** Words to score instead of the whole vocabulary. */
  targets: readonly string[] | undefined;
  batchSize: number;
  format: FillMaskFormat;
  /** Colours for the human format. */
  color: ChalkInstance;
  /** FlauBERT: force lower-casing (--lowercase). */
  doLowercase: boolean | undefined;
  /** T5 span filling: generation length limit. */
  maxNewTokens: number;
}

export interface FillMaskInput {
  index: number;
  text: string;
}

/** Writes one result; `write` applies back-pressure. */
export type Write = (text: string) => Promise<void>;

const DEFAULT_TOP_K = 5;

/** Display width of a string in a monospace terminal, close enough for the scripts FlauBERT reads. */
const width = (s: string): number => [...s].length;
const pad = (s: string, n: number): string => s + ' '.repeat(Math.max(0, n - width(s)));
const padStart = (s: string, n: number): string => ' '.repeat(Math.max(0, n - width(s))) + s;
/** A tab or newline inside a field would break the one-line, tab-separated plain format. */
const field = (s: string): string => s.replace(/[\t\r\n]/g, ' ');

export function renderFillMask(format: FillMaskFormat, color: ChalkInstance, input: FillMaskInput, masks: FillMaskPrediction[][]): string {
  if (format === 'json') {
    const out = masks.map((ranking) => ranking.map((p) => ({ token: p.token, token_str: p.tokenStr, score: p.score, sequence: p.sequence })));
    return `${JSON.stringify({ index: input.index, text: input.text, masks: out })}\n`;
  }
  if (format === 'plain') {
    // index, mask, rank, token, score, sequence: one prediction per line, tab-separated.
    return masks
      .flatMap((ranking, m) =>
        ranking.map((p, r) => `${input.index}\t${m}\t${r + 1}\t${field(p.tokenStr)}\t${p.score.toPrecision(6)}\t${field(p.sequence)}\n`),
      )
      .join('');
  }
  const lines = [color.bold(input.text)];
  masks.forEach((ranking, m) => {
    if (masks.length > 1) lines.push(color.dim(`mask ${m + 1} of ${masks.length}`));
    const tokens = ranking.map((p) => p.tokenStr);
    const scores = ranking.map((p) => p.score.toFixed(4));
    const rankWidth = Math.max(1, String(ranking.length).length);
    const tokenWidth = Math.max(width('token'), ...tokens.map(width));
    const scoreWidth = Math.max(width('score'), ...scores.map(width));
    lines.push(color.dim(`  ${padStart('#', rankWidth)}  ${pad('token', tokenWidth)}  ${pad('score', scoreWidth)}  sequence`));
    ranking.forEach((p, r) => {
      const rank = padStart(String(r + 1), rankWidth);
      lines.push(`  ${rank}  ${color.cyan(pad(tokens[r] as string, tokenWidth))}  ${padStart(scores[r] as string, scoreWidth)}  ${p.sequence}`);
    });
  });
  return `${lines.join('\n')}\n\n`;
}

export function renderSpanFill(format: FillMaskFormat, color: ChalkInstance, input: FillMaskInput, result: SpanFillResult): string {
  if (format === 'json') {
    return `${JSON.stringify({ index: input.index, text: input.text, prompt: result.prompt, filled: result.filled, spans: result.spans })}\n`;
  }
  if (format === 'plain') return `${field(result.filled)}\n`;
  // The prompt with each sentinel replaced by its span, spans highlighted.
  let i = 0;
  const shown = result.prompt.replace(/( ?)<extra_id_(\d+)>/g, (_m: string, space: string) => {
    const span = result.spans[i++];
    return span && span.text !== '' ? space + color.cyan.bold(span.text) : '';
  });
  return `${shown}\n`;
}

/** Runs `fn`, naming the input in a usage error it raises (which of many stdin lines lacks a mask). */
function atInput<T>(input: FillMaskInput, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    throw new UsageError(`input ${input.index}: ${err.message}`, { ...(err.hint === undefined ? {} : { hint: err.hint }), cause: err });
  }
}

async function runTokenFill(options: FillMaskCommandOptions, inputs: AsyncIterable<FillMaskInput>, write: Write): Promise<void> {
  const { log } = options;
  const pipeline = await FillMaskPipeline.load(options.model, { backend: options.backend, log, doLowercase: options.doLowercase });
  try {
    let targets: number[] | undefined;
    if (options.targets) {
      const resolved = pipeline.targetIds(options.targets);
      for (const w of resolved.warnings) log.notice(w);
      targets = resolved.ids;
    }
    const topK = options.topK ?? DEFAULT_TOP_K;
    let batch: { input: FillMaskInput; ids: number[] }[] = [];
    const flush = async (): Promise<void> => {
      if (batch.length === 0) return;
      const t0 = performance.now();
      const results = pipeline.runIds(batch.map((b) => b.ids), { topK, ...(targets ? { targets } : {}) });
      log.verbose(`batch of ${batch.length} in ${(performance.now() - t0).toFixed(0)} ms`);
      for (const [i, { input }] of batch.entries()) {
        await write(renderFillMask(options.format, options.color, input, results[i]?.masks ?? []));
      }
      batch = [];
    };
    for await (const input of inputs) {
      // Encoded on arrival: a text without a mask stops the run before the batch it would join is computed.
      const ids = atInput(input, () => pipeline.encode(input.text));
      batch.push({ input, ids });
      if (batch.length >= options.batchSize) await flush();
    }
    await flush();
  } finally {
    pipeline.dispose();
  }
}

async function runSpanFill(options: FillMaskCommandOptions, inputs: AsyncIterable<FillMaskInput>, write: Write): Promise<void> {
  const { log } = options;
  if (options.targets) {
    throw new UsageError('--targets applies to masked language models (FlauBERT), not to T5 span filling', {
      hint: 'drop --targets, or use a FlauBERT model',
    });
  }
  const pipeline = await SpanFillPipeline.load(options.model, { backend: options.backend, log });
  try {
    if (options.topK !== undefined) log.notice('--top-k has no effect on T5 span filling (one greedy completion per input)');
    const config = pipeline.generationConfig({ maxNewTokens: options.maxNewTokens });
    for (const w of config.warnings) log.notice(w);
    let batch: FillMaskInput[] = [];
    const flush = async (): Promise<void> => {
      if (batch.length === 0) return;
      const results = await pipeline.run(batch.map((b) => b.text), config);
      for (const [i, input] of batch.entries()) {
        const r = results[i] as SpanFillResult;
        if (r.missing.length > 0) log.notice(`input ${input.index}: the model generated no span for ${r.missing.join(', ')}`);
        await write(renderSpanFill(options.format, options.color, input, r));
      }
      batch = [];
    };
    for await (const input of inputs) {
      atInput(input, () => pipeline.prompt(input.text));
      batch.push(input);
      if (batch.length >= options.batchSize) await flush();
    }
    await flush();
  } finally {
    pipeline.dispose();
  }
}

export async function runFillMask(options: FillMaskCommandOptions, inputs: AsyncIterable<FillMaskInput>, write: Write): Promise<void> {
  const dir = await openModelDir(options.model);
  if (dir.family === 't5') await runSpanFill(options, inputs, write);
  else await runTokenFill(options, inputs, write);
}
