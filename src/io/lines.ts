/** Line-by-line reading of text streams, strict about UTF-8 so that bad bytes never become silent U+FFFD. */
import { FormatError } from '../errors.js';

export interface Line {
  /** 1-based line number in the source. */
  readonly number: number;
  readonly text: string;
}

/**
 * Yields the lines of a byte stream (\n or \r\n endings; a final line without newline counts).
 * Invalid UTF-8 is a FormatError naming the source and line.
 */
export async function* readLines(stream: AsyncIterable<Uint8Array | string>, source: string): AsyncGenerator<Line> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let pending = '';
  let number = 0;
  // Which line holds the bad bytes: UTF-8 never uses 0x0A inside a character, so split the chunk on it.
  const badLine = (chunk: Uint8Array): number => {
    const strict = new TextDecoder('utf-8', { fatal: true });
    let line = number + 1 + (pending.match(/\n/g)?.length ?? 0);
    let start = 0;
    for (let i = 0; i <= chunk.length; i++) {
      if (i < chunk.length && chunk[i] !== 0x0a) continue;
      try {
        strict.decode(chunk.subarray(start, i), { stream: i === chunk.length });
      } catch {
        return line;
      }
      line++;
      start = i + 1;
    }
    return line - 1;
  };
  const decode = (chunk: Uint8Array | undefined, last: boolean): string => {
    try {
      return chunk ? decoder.decode(chunk, { stream: !last }) : decoder.decode();
    } catch {
      const at = chunk ? badLine(chunk) : number + 1 + (pending.match(/\n/g)?.length ?? 0);
      throw new FormatError(`${source} is not valid UTF-8 (at line ${at})`, {
        hint: 'convert it to UTF-8 first, e.g. with iconv',
      });
    }
  };
  const flush = function* (text: string): Generator<Line> {
    pending += text;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      yield { number: ++number, text: line.endsWith('\r') ? line.slice(0, -1) : line };
    }
  };
  for await (const chunk of stream) {
    yield* flush(typeof chunk === 'string' ? chunk : decode(chunk, false));
  }
  yield* flush(decode(undefined, true));
  if (pending !== '') yield { number: ++number, text: pending.endsWith('\r') ? pending.slice(0, -1) : pending };
}
