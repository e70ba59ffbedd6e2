import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { goldenDir, needsShared, repoPath } from '../helpers/shared.js';
import { tempDir } from '../helpers/tmp.js';
import { tfhf } from './helpers.js';

interface GoldenCase {
  text: string;
  input_ids: number[];
  tokens: string[];
  decode: string;
  decode_skip_special_tokens: string;
}

async function golden(name: string): Promise<GoldenCase[]> {
  return (JSON.parse(await readFile(join(goldenDir, name), 'utf8')) as { cases: GoldenCase[] }).cases;
}

describe('tfhf tokenize', { skip: needsShared }, () => {
  test('--json over stdin lines gives the golden ids and tokens, in order', async () => {
    const cases = (await golden('tokenizer-t5.json')).filter((c) => !c.text.includes('\n') && !c.text.includes('\r'));
    const r = tfhf(['tokenize', '-m', repoPath('flan-t5'), '--json'], { input: cases.map((c) => c.text).join('\n') + '\n' });
    assert.equal(r.code, 0, r.stderr);
    const rows = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { text: string; ids: number[]; tokens: string[] });
    assert.equal(rows.length, cases.length);
    rows.forEach((row, i) => {
      const c = cases[i] as GoldenCase;
      assert.equal(row.text, c.text);
      assert.deepEqual(row.ids, c.input_ids, c.text);
      assert.deepEqual(row.tokens, c.tokens, c.text);
    });
  });

  test('arguments, plain output: one line of ids per text', async () => {
    const [c] = await golden('tokenizer-flaubert-cased.json');
    assert.ok(c);
    const r = tfhf(['tokenize', '-m', repoPath('flaubert-cased'), c.text]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${c.input_ids.join(' ')}\n`);
  });

  test('--input .jsonl with --field, and --no-special-tokens', async () => {
    const cases = await golden('tokenizer-t5.json');
    const dir = await tempDir();
    const file = join(dir, 'in.jsonl');
    await writeFile(file, cases.slice(0, 3).map((c) => JSON.stringify({ prompt: c.text })).join('\n') + '\n');
    const r = tfhf(['tokenize', '-m', repoPath('flan-t5'), '--input', file, '--field', 'prompt', '--json', '--no-special-tokens']);
    assert.equal(r.code, 0, r.stderr);
    const rows = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { ids: number[] });
    rows.forEach((row, i) => assert.deepEqual(row.ids, (cases[i] as GoldenCase).input_ids.slice(0, -1)));
  });

  test('--decode with and without --skip-special-tokens; JSON arrays on stdin', async () => {
    const [c] = await golden('tokenizer-t5.json');
    assert.ok(c);
    const a = tfhf(['tokenize', '-m', repoPath('flan-t5'), '--decode', ...c.input_ids.map(String)]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(a.stdout, `${c.decode}\n`);
    const b = tfhf(['tokenize', '-m', repoPath('flan-t5'), '--decode', '--skip-special-tokens'], { input: `${JSON.stringify(c.input_ids)}\n` });
    assert.equal(b.code, 0, b.stderr);
    assert.equal(b.stdout, `${c.decode_skip_special_tokens}\n`);
  });

  test('invalid UTF-8 on stdin: exit 5, one line naming the problem', () => {
    const r = tfhf(['tokenize', '-m', repoPath('flan-t5')], { input: Buffer.from([0x68, 0x69, 0x0a, 0xff, 0xfe, 0x0a]) });
    assert.equal(r.code, 5);
    assert.match(r.stderr, /not valid UTF-8 \(at line 2\)/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  });

  test('ids out of range for --decode: usage error', () => {
    const r = tfhf(['tokenize', '-m', repoPath('flan-t5'), '--decode', '5', '1128']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /token id 1128 is out of range/);
  });

  test('a model directory without tokenizer files: exit 3', async () => {
    const dir = join(await tempDir(), 'empty-model');
    await mkdir(dir);
    await writeFile(join(dir, 'config.json'), '{"model_type": "t5"}');
    const r = tfhf(['tokenize', '-m', dir, 'hello']);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /no tokenizer files/);
  });

  test('an unknown Hub id that is not cached says where it looked', async () => {
    const cache = await tempDir();
    const r = tfhf(['tokenize', '-m', 'nobody/nothing', 'hi'], { env: { HF_HUB_CACHE: cache } });
    assert.equal(r.code, 3);
    assert.ok(r.stderr.includes(cache), r.stderr);
  });
});
