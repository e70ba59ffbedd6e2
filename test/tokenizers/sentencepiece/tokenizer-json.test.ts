import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FormatError, UnsupportedError } from '../../../src/errors.js';
import { decodeModelProto } from '../../../src/tokenizers/sentencepiece/proto.js';
import { addedTokensFromTokenizerJson } from '../../../src/tokenizers/added-tokens.js';
import { modelFromTokenizerJson } from '../../../src/tokenizers/sentencepiece/tokenizer-json.js';
import { hubDir, needsShared } from '../../helpers/shared.js';

async function json(path: string): Promise<unknown> {
  return JSON.parse(await readFile(path, 'utf8')) as unknown;
}

describe('tokenizer.json → ModelProto', () => {
  for (const name of [join('google', 'flan-t5-large'), 't5-small']) {
    test(`${name}: the spiece.model pieces, scores, types and normaliser`, { skip: needsShared }, async () => {
      const spiece = decodeModelProto(new Uint8Array(await readFile(join(hubDir, 'google', 'flan-t5-large', 'spiece.model'))));
      const { model, addedTokens } = modelFromTokenizerJson(await json(join(hubDir, name, 'tokenizer.json')));
      assert.equal(model.pieces.length, 32000);
      for (let i = 0; i < 32000; i++) {
        const a = model.pieces[i];
        const b = spiece.pieces[i];
        if (a?.piece !== b?.piece || a?.score !== b?.score || a?.type !== b?.type) {
          assert.fail(`piece ${i}: ${JSON.stringify([a?.piece, a?.score, a?.type])} vs ${JSON.stringify([b?.piece, b?.score, b?.type])}`);
        }
      }
      assert.deepEqual(model.normalizerSpec.precompiledCharsmap, spiece.normalizerSpec.precompiledCharsmap);
      const flags = ({ addDummyPrefix, removeExtraWhitespaces, escapeWhitespaces }: typeof model.normalizerSpec) => ({
        addDummyPrefix,
        removeExtraWhitespaces,
        escapeWhitespaces,
      });
      assert.deepEqual(flags(model.normalizerSpec), flags(spiece.normalizerSpec));
      assert.equal(model.trainerSpec.unkId, 2);
      assert.equal(addedTokens.length, 103);
      assert.deepEqual(addedTokens[3], {
        id: 32000,
        content: '<extra_id_99>',
        lstrip: false,
        rstrip: false,
        singleWord: false,
        normalized: false,
        special: true,
      });
    });
  }

  const minimal = (over: Record<string, unknown>): unknown => ({
    model: { type: 'Unigram', unk_id: 0, vocab: [['<unk>', 0], ['▁', -1], ['a', -2]] },
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always' },
    ...over,
  });

  test('newer serialisations: Prepend/Replace normaliser, prepend_scheme', () => {
    const { model } = modelFromTokenizerJson(
      minimal({
        normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
        pre_tokenizer: null,
      }),
    );
    assert.equal(model.normalizerSpec.addDummyPrefix, true);
    assert.equal(model.normalizerSpec.escapeWhitespaces, true);
    assert.equal(model.normalizerSpec.removeExtraWhitespaces, false);
    const never = modelFromTokenizerJson(minimal({ pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'never' } }));
    assert.equal(never.model.normalizerSpec.addDummyPrefix, false);
  });

  test('what is not a SentencePiece Unigram tokenizer is refused', () => {
    assert.throws(() => modelFromTokenizerJson(minimal({ model: { type: 'BPE', vocab: {}, merges: [] } })), UnsupportedError);
    assert.throws(() => modelFromTokenizerJson(minimal({ normalizer: { type: 'NFKC' } })), UnsupportedError);
    assert.throws(() => modelFromTokenizerJson(minimal({ pre_tokenizer: { type: 'ByteLevel' } })), UnsupportedError);
    assert.throws(() => modelFromTokenizerJson(minimal({ model: { type: 'Unigram', unk_id: 5, vocab: [['a', 0]] } })), FormatError);
    assert.throws(() => modelFromTokenizerJson(minimal({ model: { type: 'Unigram', unk_id: 0, vocab: [['a']] } })), FormatError);
    assert.throws(() => modelFromTokenizerJson([]), FormatError);
    assert.throws(() => addedTokensFromTokenizerJson({ added_tokens: [{ content: 'x' }] }), FormatError);
  });
});
