/** `tfhf tokenize`: texts → ids and tokens, ids → text, with transformers' slow-tokenizer semantics. */
import { FormatError, UsageError } from '../errors.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';

export interface TokenizeResult {
  text: string;
  ids: number[];
  tokens: string[];
}

export function tokenizeText(tokenizer: Tokenizer, text: string, addSpecialTokens: boolean): TokenizeResult {
  const { ids, tokens } = tokenizer.encode(text, { addSpecialTokens });
  return { text, ids, tokens };
}

/** Parses `[1, 2, 3]` or `1 2 3` (one sequence per stdin line in --decode mode). */
export function parseIdList(line: string, where: string): number[] {
  const trimmed = line.trim();
  let values: unknown[];
  if (trimmed.startsWith('[')) {
    try {
      const parsed: unknown = JSON.parse(trimmed);
      if (!Array.isArray(parsed)) throw new Error('not an array');
      values = parsed;
    } catch {
      throw new FormatError(`${where} is not a JSON array of ids`);
    }
  } else {
    values = trimmed === '' ? [] : trimmed.split(/[\s,]+/).map((v) => (/^-?\d+$/.test(v) ? Number(v) : v));
  }
  for (const v of values) {
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new FormatError(`${where}: '${String(v)}' is not a token id`);
  }
  return values as number[];
}

export function decodeIds(tokenizer: Tokenizer, ids: readonly number[], skipSpecialTokens: boolean): string {
  for (const id of ids) {
    if (!Number.isInteger(id) || id < 0 || id >= tokenizer.size) {
      throw new UsageError(`token id ${id} is out of range for this tokenizer (valid ids: 0 to ${tokenizer.size - 1})`);
    }
  }
  return tokenizer.decode(ids, { skipSpecialTokens });
}
