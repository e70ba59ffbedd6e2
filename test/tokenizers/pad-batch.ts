import type { Encoding } from '../../src/tokenizers/tokenizer.js';

/** Right-padded batch as transformers' `tokenizer(texts, padding=True)` returns it. */
export interface PaddedBatch {
  inputIds: number[][];
  tokenTypeIds: number[][];
  attentionMask: number[][];
}

export function padBatch(encodings: readonly Encoding[], padId: number): PaddedBatch {
  const width = Math.max(0, ...encodings.map((e) => e.ids.length));
  const pad = (row: readonly number[], value: number): number[] => [...row, ...new Array<number>(width - row.length).fill(value)];
  return {
    inputIds: encodings.map((e) => pad(e.ids, padId)),
    tokenTypeIds: encodings.map((e) => pad(e.tokenTypeIds ?? new Array<number>(e.ids.length).fill(0), 0)),
    attentionMask: encodings.map((e) => pad(new Array<number>(e.ids.length).fill(1), 0)),
  };
}
