/** Reading the JSON files of a tokenizer folder, with the errors both tokenizers report. */
import { readFile } from 'node:fs/promises';
import { FormatError, ioErrorFrom } from '../errors.js';

export type JsonObject = Record<string, unknown>;

export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A file's bytes; undefined when an optional file is absent. */
export async function readTokenizerFile(path: string, required = false): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw ioErrorFrom(err, path, 'read');
  }
}

export function parseJson(bytes: Buffer | undefined, path: string): unknown {
  if (bytes === undefined) return undefined;
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch (err) {
    throw new FormatError(`${path} is not valid JSON: ${(err as Error).message}`, { hint: 're-download the tokenizer files' });
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function skipSpace(b: Uint8Array, i: number): number {
  while (i < b.length && isSpace(b[i] as number)) i++;
  return i;
}

/**
 * Just past the value starting at `i`, or -1: strings are skipped whole, brackets only counted. One plain
 * loop, no calls: a tokenizer.json vocabulary holds some 64 000 short strings. UTF-8 continuation bytes
 * never equal an ASCII byte, so the scan is safe on undecoded bytes.
 */
function valueEnd(b: Uint8Array, i: number): number {
  const n = b.length;
  let depth = 0;
  for (; i < n; i++) {
    const c = b[i] as number;
    if (c === QUOTE) {
      for (i++; i < n && b[i] !== QUOTE; i++) if (b[i] === BACKSLASH) i++;
      if (i >= n) return -1;
      if (depth === 0) return i + 1;
    } else if (c === 0x7b || c === 0x5b) {
      depth++;
    } else if (c === 0x7d || c === 0x5d) {
      if (depth === 0) return i;
      if (--depth === 0) return i + 1;
    } else if (depth === 0 && (c === 0x2c || isSpace(c))) {
      return i;
    }
  }
  return depth === 0 ? i : -1;
}

/**
 * One top-level value of a JSON object, parsed on its own. transformers reads only `added_tokens` from the
 * 2.4 MB tokenizer.json beside spiece.model, and the tokenizers library writes that key before the
 * vocabulary, so the scan stops long before it: values ahead of the key are skipped by counting brackets, and
 * of the rest only the closing `}` is checked (a truncated file is noticed, a damaged vocabulary is not; a
 * repeated key gives its first value, where JSON.parse keeps the last). `{ value: undefined }` when the key is
 * absent; undefined when the layout is not understood, and the caller parses the whole file instead, which
 * reports real syntax errors.
 */
export function topLevelValue(data: Uint8Array, key: string): { value: unknown } | undefined {
  // A plain Uint8Array even for a Buffer: one element kind keeps the scanning loop fast.
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  let last = bytes.length - 1;
  while (last >= 0 && isSpace(bytes[last] as number)) last--;
  if (bytes[last] !== 0x7d) return undefined;
  const text = (from: number, to: number): string => new TextDecoder().decode(bytes.subarray(from, to));
  let i = skipSpace(bytes, 0);
  if (bytes[i] !== 0x7b) return undefined;
  i = skipSpace(bytes, i + 1);
  try {
    for (let done = bytes[i] === 0x7d; !done; ) {
      const keyEnd = bytes[i] === QUOTE ? valueEnd(bytes, i) : -1;
      if (keyEnd < 0) return undefined;
      const name = JSON.parse(text(i, keyEnd)) as string;
      i = skipSpace(bytes, keyEnd);
      if (bytes[i] !== 0x3a) return undefined;
      i = skipSpace(bytes, i + 1);
      const end = valueEnd(bytes, i);
      if (end <= i) return undefined;
      if (name === key) return { value: JSON.parse(text(i, end)) as unknown };
      i = skipSpace(bytes, end);
      if (bytes[i] === 0x7d) done = true;
      else if (bytes[i] === 0x2c) i = skipSpace(bytes, i + 1);
      else return undefined;
    }
  } catch {
    return undefined;
  }
  return skipSpace(bytes, i + 1) === bytes.length ? { value: undefined } : undefined;
}
