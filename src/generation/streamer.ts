/**
 * Text deltas for streamed tokens, by transformers 4.37's `TextStreamer` rule (`generation/streamers.py`):
 * SentencePiece pieces do not map one-to-one to text (a piece may start with a space that only shows once the
 * next word arrives, bytes may merge), so the whole cached sequence is decoded again at each token and only
 * the part that can no longer change is released: everything after a newline or a CJK character, otherwise up
 * to the last space. The rest comes out at `end()`.
 */

/** Decodes token ids to text; for streaming, with special tokens skipped (transformers' `skip_special_tokens`). */
export type Decode = (ids: readonly number[]) => string;

export class TextStreamer {
  private cache: number[] = [];
  /** UTF-16 units of the decoded cache already released. */
  private printed = 0;

  constructor(private readonly decode: Decode) {}

  /** Adds tokens; returns the text that became final (possibly ""). */
  put(tokens: number | readonly number[]): string {
    if (typeof tokens === 'number') this.cache.push(tokens);
    else this.cache.push(...tokens);
    const text = this.decode(this.cache);
    let delta: string;
    if (text.endsWith('\n')) {
      // A line is complete: start a fresh cache so long outputs are not re-decoded from the beginning.
      delta = text.slice(this.printed);
      this.cache = [];
      this.printed = 0;
    } else if (text.length > 0 && isCjk(text.codePointAt(lastCodePointStart(text))!)) {
      delta = text.slice(this.printed);
      this.printed += delta.length;
    } else {
      delta = text.slice(this.printed, text.lastIndexOf(' ') + 1);
      this.printed += delta.length;
    }
    return delta;
  }

  /** Releases whatever is left and resets for another sequence. */
  end(): string {
    const delta = this.cache.length > 0 ? this.decode(this.cache).slice(this.printed) : '';
    this.cache = [];
    this.printed = 0;
    return delta;
  }
}

/** The non-empty text deltas of a token stream (e.g. `streamTokens(...)`), ending with the flushed rest. */
export async function* streamText(tokens: AsyncIterable<number>, decode: Decode): AsyncGenerator<string, void> {
  const streamer = new TextStreamer(decode);
  for await (const token of tokens) {
    const delta = streamer.put(token);
    if (delta !== '') yield delta;
  }
  const rest = streamer.end();
  if (rest !== '') yield rest;
}

function lastCodePointStart(text: string): number {
  const last = text.length - 1;
  const unit = text.charCodeAt(last);
  return unit >= 0xdc00 && unit <= 0xdfff && last > 0 ? last - 1 : last;
}

/** transformers' `_is_chinese_char`: the CJK Unified Ideographs blocks, where words are not space-separated. */
export function isCjk(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}
