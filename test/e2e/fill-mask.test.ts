/** `tfhf fill-mask` as a user runs it: --json against transformers' pipeline output, stdin, formats, errors, T5. */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { needsShared, repoPath } from '../helpers/shared.js';
import { tempDir } from '../helpers/tmp.js';
import { readGolden, SCORE_TOLERANCE, type FillMaskCase } from '../models/flaubert/golden.js';
import { tfhf } from './helpers.js';

interface JsonPrediction {
  token: number;
  token_str: string;
  score: number;
  sequence: string;
}
interface JsonRow {
  index: number;
  text: string;
  masks: JsonPrediction[][];
}

const parseRows = (stdout: string): JsonRow[] => stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as JsonRow);

/** Each row has the golden FillMaskPipeline fields: token, token_str, sequence equal, score within 1e-5. */
function matchesGolden(rows: JsonRow[], cases: readonly FillMaskCase[]): void {
  assert.equal(rows.length, cases.length);
  rows.forEach((row, i) => {
    const c = cases[i] as FillMaskCase;
    assert.equal(row.index, i);
    assert.equal(row.text, c.text);
    assert.deepEqual(
      row.masks.map((m) => m.map((p) => [p.token, p.token_str, p.sequence])),
      c.fill_mask_pipeline.map((m) => m.map((p) => [p.token, p.token_str, p.sequence])),
      c.text,
    );
    row.masks.forEach((m, j) =>
      m.forEach((p, k) => assert.ok(Math.abs(p.score - (c.fill_mask_pipeline[j]?.[k]?.score ?? NaN)) < SCORE_TOLERANCE, c.text)),
    );
    assert.deepEqual(Object.keys(row.masks[0]?.[0] ?? {}), ['token', 'token_str', 'score', 'sequence']);
  });
}

describe('tfhf fill-mask', { skip: needsShared }, () => {
  test('--json with TEXT arguments: the golden fill-mask pipeline output', () => {
    const cases = readGolden('flaubert-cased').cases.fill_mask;
    const r = tfhf(['fill-mask', '-m', repoPath('flaubert-cased'), '--json', ...cases.map((c) => c.text)]);
    assert.equal(r.code, 0, r.stderr);
    matchesGolden(parseRows(r.stdout), cases);
  });

  test('--json over stdin lines, batched by 4 with <mask> written for the mask: same output', () => {
    const cases = readGolden('flaubert-uncased').cases.fill_mask;
    const input = cases.map((c) => c.text.replaceAll('<special1>', '<mask>')).join('\n') + '\n';
    const r = tfhf(['fill-mask', '-m', repoPath('flaubert-uncased'), '--json', '--batch-size', '4'], { input });
    assert.equal(r.code, 0, r.stderr);
    const rows = parseRows(r.stdout);
    rows.forEach((row, i) => assert.equal(row.text, cases[i]?.text.replaceAll('<special1>', '<mask>')));
    matchesGolden(
      rows.map((row, i) => ({ ...row, text: cases[i]?.text ?? '' })),
      cases,
    );
  });

  test('plain output (not a terminal): index, mask, rank, token, score, sequence per line; --top-k', () => {
    const c = readGolden('flaubert-cased').cases.fill_mask.find((x) => x.mask_positions.length === 2);
    assert.ok(c);
    const r = tfhf(['fill-mask', '-m', repoPath('flaubert-cased'), '--top-k', '2', c.text]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n').map((l) => l.split('\t'));
    assert.equal(lines.length, 4);
    lines.forEach((cols, i) => {
      const want = c.fill_mask_pipeline[Math.floor(i / 2)]?.[i % 2];
      assert.ok(want);
      assert.deepEqual(cols.slice(0, 4), ['0', String(Math.floor(i / 2)), String((i % 2) + 1), want.token_str]);
      assert.ok(Math.abs(Number(cols[4]) - want.score) < SCORE_TOLERANCE);
      assert.equal(cols[5], want.sequence);
    });
  });

  test('--targets scores only those words and warns about the replaced ones on stderr; -o writes the file', async () => {
    const c = readGolden('flaubert-cased').cases.fill_mask[0];
    assert.ok(c);
    const dir = await tempDir();
    const out = join(dir, 'out.jsonl');
    const r = tfhf(['fill-mask', '-m', repoPath('flaubert-cased'), '--json', '--targets', 'chat,tagne', '-o', out, c.text]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /'chat' does not exist in the model vocabulary; replacing it with 'chat<\/w>'/);
    const [row] = parseRows(await readFile(out, 'utf8'));
    assert.deepEqual(
      row?.masks[0]?.map((p) => p.token_str),
      ['tagne', 'chat'],
    );
    assert.ok(Math.abs((row?.masks[0]?.[0]?.score ?? 0) - (c.fill_mask_pipeline[0]?.[0]?.score ?? 1)) < SCORE_TOLERANCE);
  });

  test('--input .jsonl with --field', async () => {
    const cases = readGolden('flaubert-cased').cases.fill_mask.slice(0, 2);
    const dir = await tempDir();
    const file = join(dir, 'in.jsonl');
    await writeFile(file, cases.map((c) => JSON.stringify({ sentence: c.text })).join('\n') + '\n');
    const r = tfhf(['fill-mask', '-m', repoPath('flaubert-cased'), '--json', '--input', file, '--field', 'sentence']);
    assert.equal(r.code, 0, r.stderr);
    matchesGolden(parseRows(r.stdout), cases);
  });

  test('a line without a mask: usage error (exit 2) naming the input and how to write the mask', () => {
    const c = readGolden('flaubert-cased').cases.fill_mask[0];
    assert.ok(c);
    const r = tfhf(['fill-mask', '-m', repoPath('flaubert-cased'), '--json'], { input: `${c.text}\nPas de masque.\n` });
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /input 1: no mask token in "Pas de masque\."/);
    assert.match(r.stderr, /<special1> \(or <mask>\)/);
  });

  test('--help documents the options', () => {
    const r = tfhf(['fill-mask', '--help']);
    assert.equal(r.code, 0);
    for (const word of ['--top-k', '--targets', '--batch-size', '--json', '--input', 'flaubert/flaubert_base_cased']) assert.ok(r.stdout.includes(word), word);
  });

  test('T5 model: <mask> is filled by generation (the completed sentence); --targets is refused', () => {
    const text = 'The <mask> walks in the park.';
    const r = tfhf(['fill-mask', '-m', repoPath('flan-t5'), '--json', '--max-new-tokens', '6', text]);
    assert.equal(r.code, 0, r.stderr);
    const row = JSON.parse(r.stdout) as { index: number; text: string; prompt: string; filled: string; spans: { sentinel: string; text: string }[] };
    assert.equal(row.prompt, 'The <extra_id_0> walks in the park.');
    assert.equal(row.spans.length, 1);
    // The same greedy output `generate` gives for the prompt.
    const g = tfhf(['generate', '-m', repoPath('flan-t5'), '--json', '--max-new-tokens', '6', row.prompt]);
    assert.equal(g.code, 0, g.stderr);
    const span = (JSON.parse(g.stdout) as { text: string }).text.trim();
    assert.equal(row.spans[0]?.text, span);
    assert.equal(row.filled, span === '' ? 'The walks in the park.' : `The ${span} walks in the park.`);

    const plain = tfhf(['fill-mask', '-m', repoPath('flan-t5'), '--max-new-tokens', '6', text]);
    assert.equal(plain.stdout, `${row.filled}\n`);

    const refused = tfhf(['fill-mask', '-m', repoPath('flan-t5'), '--targets', 'dog', text]);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /--targets applies to masked language models/);
    const noMask = tfhf(['fill-mask', '-m', repoPath('flan-t5'), 'nothing to fill']);
    assert.equal(noMask.code, 2);
    assert.match(noMask.stderr, /input 0: no mask/);
  });
});
