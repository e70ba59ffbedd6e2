/** Picks and loads the tokenizer of a model directory (Hub layout or converted): T5 SentencePiece or FlauBERT BPE. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FormatError, NotFoundError, UnsupportedError } from '../errors.js';
import { ignoredLowercaseNotice, loadFlaubertTokenizer } from './flaubert.js';
import { loadT5Tokenizer } from './t5.js';
import type { Tokenizer } from './tokenizer.js';
import { pathExists as exists } from '../io/fs.js';

export interface LoadTokenizerOptions {
  /** FlauBERT only: force lower-casing on or off (transformers' `do_lowercase` kwarg). */
  doLowercase?: boolean | undefined;
  /** Receives warnings about files whose settings transformers (and so tfhf) ignores. */
  onNotice?: (message: string) => void;
}


async function modelType(dir: string): Promise<string | undefined> {
  const path = join(dir, 'config.json');
  if (!(await exists(path))) return undefined;
  try {
    const type = (JSON.parse(await readFile(path, 'utf8')) as { model_type?: unknown }).model_type;
    return typeof type === 'string' ? type : undefined;
  } catch (err) {
    throw new FormatError(`${path} is not valid JSON: ${(err as Error).message}`);
  }
}

export async function loadTokenizer(dir: string, options: LoadTokenizerOptions = {}): Promise<Tokenizer> {
  const type = await modelType(dir);
  const hasSentencePiece = (await exists(join(dir, 'spiece.model'))) || (await exists(join(dir, 'tokenizer.json')));
  const hasBpe = (await exists(join(dir, 'vocab.json'))) && (await exists(join(dir, 'merges.txt')));
  if (type === 't5' || (type === undefined && hasSentencePiece)) {
    if (!hasSentencePiece) {
      throw new NotFoundError(`${dir} has no tokenizer files`, { hint: 'a T5 model needs spiece.model or tokenizer.json' });
    }
    return loadT5Tokenizer(dir);
  }
  if (type === 'flaubert' || (type === undefined && hasBpe)) {
    if (!hasBpe) {
      throw new NotFoundError(`${dir} has no tokenizer files`, { hint: 'a FlauBERT model needs vocab.json and merges.txt' });
    }
    const tokenizer = await loadFlaubertTokenizer(dir, options.doLowercase === undefined ? {} : { doLowercase: options.doLowercase });
    const notice = ignoredLowercaseNotice(tokenizer.lowercase);
    if (notice) options.onNotice?.(notice);
    return tokenizer;
  }
  if (type !== undefined) {
    throw new UnsupportedError(`model type '${type}' is not supported`, { hint: 'tfhf runs T5, FLAN-T5, FLAN-UL2 and FlauBERT models' });
  }
  throw new NotFoundError(`${dir} has no tokenizer files`, {
    hint: 'expected spiece.model or tokenizer.json (T5), or vocab.json + merges.txt (FlauBERT)',
  });
}
