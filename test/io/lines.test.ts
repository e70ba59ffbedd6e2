import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FormatError } from '../../src/errors.js';
import { readLines } from '../../src/io/lines.js';

async function collect(chunks: Uint8Array[]): Promise<string[]> {
  const out: string[] = [];
  for await (const line of readLines((async function* () { yield* chunks; })(), 'test')) out.push(line.text);
  return out;
}

test('lines across chunk boundaries, CRLF, a last line without newline', async () => {
  const bytes = Buffer.from('héllo\r\nwörld\n\nlast');
  // Split inside the two-byte é and ö so the decoder must carry partial characters.
  const chunks = [bytes.subarray(0, 2), bytes.subarray(2, 9), bytes.subarray(9)];
  assert.deepEqual(await collect(chunks), ['héllo', 'wörld', '', 'last']);
});

test('a trailing newline does not make an extra empty line', async () => {
  assert.deepEqual(await collect([Buffer.from('a\nb\n')]), ['a', 'b']);
});

test('invalid UTF-8 is a FormatError with the line number', async () => {
  await assert.rejects(collect([Buffer.from('ok\n'), Buffer.from([0xc3, 0x28])]), (e) => e instanceof FormatError && /line 2/.test(e.message));
});
