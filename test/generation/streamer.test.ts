import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { TextStreamer, isCjk, streamText } from '../../src/generation/streamer.js';

/**
 * A SentencePiece-like decoder: "▁" marks a word start, the dummy-prefix space is dropped at the start of the
 * text, special tokens (0 pad, 1 eos) are skipped. Decoding piece by piece would print "▁" or lose spaces;
 * re-decoding the whole sequence does not.
 */
const pieces: Record<number, string> = {
  2: '▁Hello',
  3: ',',
  4: '▁wor',
  5: 'ld',
  6: '\n',
  7: '▁你',
  8: '好',
  9: '▁𠀀', // U+20000, a CJK ideograph outside the BMP
  10: '▁!',
};
const decode = (ids: readonly number[]): string =>
  ids
    .filter((id) => id > 1)
    .map((id) => pieces[id]!)
    .join('')
    .replaceAll('▁', ' ')
    .replace(/^ /, '');

function deltas(tokens: number[]): string[] {
  const streamer = new TextStreamer(decode);
  return [...tokens.map((t) => streamer.put(t)), streamer.end()];
}

describe('TextStreamer', () => {
  test('holds back the unfinished word, releases it at the next space, flushes the rest at the end', () => {
    assert.deepEqual(deltas([2, 3, 4, 5, 1]), ['', '', 'Hello, ', '', '', 'world']);
  });

  test('the concatenated deltas equal the decoded sequence', () => {
    const tokens = [2, 4, 5, 10, 3, 2, 1];
    assert.equal(deltas(tokens).join(''), decode(tokens));
  });

  test('a newline flushes everything and restarts the cache', () => {
    // After the flush, "▁wor" decodes alone, so its leading space is dropped as SentencePiece does.
    assert.deepEqual(deltas([2, 6, 4, 5]), ['', 'Hello\n', '', '', 'world']);
  });

  test('CJK characters are released at once, also outside the BMP', () => {
    assert.deepEqual(deltas([7, 8]), ['你', '好', '']);
    assert.deepEqual(deltas([2, 9]), ['', 'Hello 𠀀', '']);
    assert.ok(isCjk(0x4e00) && isCjk(0x20000) && !isCjk(0x3042)); // Hiragana is space-separated
  });

  test('end() with nothing cached is empty, and the streamer can be reused', () => {
    const streamer = new TextStreamer(decode);
    assert.equal(streamer.end(), '');
    assert.equal(streamer.put([2, 4]), 'Hello ');
    assert.equal(streamer.end(), 'wor');
    assert.equal(streamer.put(5), '');
    assert.equal(streamer.end(), 'ld');
  });

  test('streamText turns a token stream into non-empty deltas', async () => {
    async function* tokens() {
      yield* [2, 3, 4, 5, 6, 7, 1];
    }
    const out: string[] = [];
    for await (const text of streamText(tokens(), decode)) out.push(text);
    assert.deepEqual(out, ['Hello, ', 'world\n', '你']);
  });
});
