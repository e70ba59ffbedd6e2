/** The FlauBERT golden files (../shared/reference/golden/flaubert-*.json) and the comparisons the tests share. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { goldenDir, repoPath } from '../../helpers/shared.js';

export interface GoldenPrediction {
  score: number;
  token: number;
  token_str: string;
  sequence: string;
}

export interface FillMaskCase {
  text: string;
  input_ids: number[];
  token_type_ids: number[];
  attention_mask: number[];
  mask_positions: number[];
  logits_at_masks: number[][];
  top5: { token_id: number; token: string; token_str: string; score: number }[][];
  fill_mask_pipeline: GoldenPrediction[][];
  logits_at_masks_without_token_type_ids: number[][];
}

export interface FlaubertGolden {
  repo: string;
  sharded_variant?: string;
  config: Record<string, unknown>;
  cases: {
    fill_mask: FillMaskCase[];
    base_model: {
      text: string;
      input_ids: number[];
      token_type_ids: number[];
      attention_mask: number[];
      last_hidden_state: number[][];
      hidden_states: number[][][];
    };
    batched_fill_mask: {
      texts: string[];
      input_ids: number[][];
      token_type_ids: number[][];
      attention_mask: number[][];
      logits_at_masks: number[][][];
    };
  };
}

export const FLAUBERT_GOLDENS = ['flaubert-cased', 'flaubert-uncased'] as const;

export function readGolden(name: string): FlaubertGolden {
  return JSON.parse(readFileSync(join(goldenDir, `${name}.json`), 'utf8')) as FlaubertGolden;
}

export function readRepoConfig(repo: string): Record<string, unknown> {
  return JSON.parse(readFileSync(join(repoPath(repo), 'config.json'), 'utf8')) as Record<string, unknown>;
}

/** Softmax of one row, in double precision. */
export function softmax(row: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) max = Math.max(max, row[i] as number);
  const out = new Float64Array(row.length);
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += out[i] = Math.exp((row[i] as number) - max);
  for (let i = 0; i < row.length; i++) (out[i] as number) /= sum;
  return out;
}

/** Indices of the k largest values, best first. */
export function topK(row: ArrayLike<number>, k: number): number[] {
  return Array.from({ length: row.length }, (_, i) => i)
    .sort((a, b) => (row[b] as number) - (row[a] as number) || a - b)
    .slice(0, k);
}

/** Largest error tolerated: 1e-4 absolute beyond the golden's rounding (the acceptance bound). */
export const LOGIT_TOLERANCE = 1e-4;
export const STATE_TOLERANCE = 1e-4;
export const SCORE_TOLERANCE = 1e-5;
