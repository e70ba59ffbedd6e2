import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type AddedToken, AddedTokenSplitter, initAddedTokens, specialTokenSettings } from '../../src/tokenizers/added-tokens.js';
import { topLevelValue } from '../../src/tokenizers/json-files.js';
import { hubDir, needsShared } from '../helpers/shared.js';

function token(content: string, flags: Partial<AddedToken> = {}): AddedToken {
  return { content, lstrip: false, rstrip: false, singleWord: false, normalized: false, special: true, ...flags };
}

describe('AddedTokenSplitter (Trie.split and the flag loop of PreTrainedTokenizer.tokenize)', () => {
  test('the earliest match wins, and there the longest token', () => {
    const s = new AddedTokenSplitter([token('<a>'), token('<a>b'), token('b<')]);
    assert.deepEqual(s.split('x<a>by<a>'), ['x', '<a>b', 'y', '<a>']);
    assert.deepEqual(s.split('ab<a>'), ['a', 'b<', 'a>']);
    assert.deepEqual(s.split('plain'), ['plain']);
  });

  test('no cut between the halves of a surrogate pair, as Python sees code points', () => {
    const s = new AddedTokenSplitter([token('\ud83d'), token('\ude00!')]);
    assert.deepEqual(s.split('a😀!b'), ['a😀!b']);
    assert.deepEqual(s.split('a\ud83d b'), ['a', '\ud83d', ' b']);
  });

  test('lstrip / rstrip strip the neighbours with Python whitespace', () => {
    const s = new AddedTokenSplitter([token('<m>', { lstrip: true, rstrip: true }), token('<k>')]);
    assert.deepEqual(s.split('a \u0085<m>\u3000 b'), ['a', '<m>', 'b']);
    assert.deepEqual(s.split('a\ufeff<m>'), ['a\ufeff', '<m>']);
    assert.deepEqual(s.split('a <k> b'), ['a ', '<k>', ' b']);
  });

  test('single_word glues the token to a neighbour that is not space-separated, as the Python loop does', () => {
    const w = (c: string): AddedToken => token(c, { singleWord: true });
    const s = new AddedTokenSplitter([w('<a>'), w('<b>'), w('<c>')]);
    assert.deepEqual(s.split('x<a>y'), ['x<a>', '', 'y']);
    assert.deepEqual(s.split(' <a>y'), [' ', '', '<a>y']);
    assert.deepEqual(s.split(' <a> y'), [' ', '<a>', ' y']);
    // The right-hand merge lands in the next piece, which a later token then sees as its left neighbour.
    assert.deepEqual(s.split(' <a><b><c>'), [' ', '', '<a><b><c>', '']);
  });
});

describe('special tokens and added tokens as from_pretrained reads them', () => {
  const map = { mask_token: '<m2>', additional_special_tokens: ['<x>', '<y>'] };

  test('special_tokens_map.json counts only without a saved added_tokens_decoder, and adds to the list', () => {
    const config = { mask_token: '<m1>', additional_special_tokens: ['<y>', '<z>'] };
    const legacy = specialTokenSettings({ unk_token: '<unk>' }, config, map);
    assert.equal(legacy.single.get('mask_token')?.content, '<m2>');
    assert.equal(legacy.single.get('unk_token')?.content, '<unk>');
    assert.deepEqual(legacy.additional?.map((t) => t.content), ['<y>', '<z>', '<x>']);
    const saved = specialTokenSettings({}, { ...config, added_tokens_decoder: {} }, map);
    assert.equal(saved.single.get('mask_token')?.content, '<m1>');
    assert.equal(specialTokenSettings({ unk_token: '<unk>' }, { unk_token: null }, undefined).single.has('unk_token'), false);
    assert.equal(specialTokenSettings({}, {}, undefined).additional, undefined);
  });

  test('missing special tokens take their vocabulary id, or the ids after get_vocab()', () => {
    const vocab = new Map([
      ['a', 0],
      ['<s>', 1],
      ['b', 2],
    ]);
    const config = { added_tokens_decoder: { '7': { content: '<k>', rstrip: true } } };
    const { added, addedIds } = initAddedTokens(config, {}, [token('<s>'), token('<new>'), token('<k>'), token('')], () => new Map(vocab));
    assert.deepEqual([...addedIds], [
      ['<k>', 7],
      ['<s>', 1],
      ['<new>', 4],
    ]);
    assert.equal(added.get(7)?.rstrip, true);
    assert.equal(added.get(4)?.special, true);
  });
});

describe('topLevelValue', () => {
  const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

  test('reads one value and leaves the rest unparsed', () => {
    const json = ' {"v": "1.\\"0", "n": null, "added_tokens": [{"id": 0, "content": "é\\"]"}], "model": {"vocab": [["}", -1]]}}\n';
    assert.deepEqual(topLevelValue(bytes(json), 'added_tokens'), { value: [{ id: 0, content: 'é"]' }] });
    assert.deepEqual(topLevelValue(bytes(json), 'n'), { value: null });
    assert.deepEqual(topLevelValue(bytes(json), 'absent'), { value: undefined });
    assert.deepEqual(topLevelValue(bytes('{}'), 'absent'), { value: undefined });
  });

  test('what it does not understand is left to JSON.parse', () => {
    assert.equal(topLevelValue(bytes('{"added_tokens": [], "model": {'), 'added_tokens'), undefined);
    assert.equal(topLevelValue(bytes('[{"added_tokens": []}]'), 'added_tokens'), undefined);
    assert.equal(topLevelValue(bytes('{"a": 1 "added_tokens": []}'), 'added_tokens'), undefined);
    assert.equal(topLevelValue(bytes('{"a": [1}, "b": 2'), 'b'), undefined);
    assert.equal(topLevelValue(bytes('\ufeff{"added_tokens": []}'), 'added_tokens'), undefined);
  });

  test('flan-t5-large tokenizer.json: the same added_tokens as JSON.parse', { skip: needsShared }, async () => {
    const file = await readFile(join(hubDir, 'google', 'flan-t5-large', 'tokenizer.json'));
    const parsed = JSON.parse(file.toString('utf8')) as { added_tokens: unknown };
    assert.deepEqual(topLevelValue(file, 'added_tokens'), { value: parsed.added_tokens });
  });
});
