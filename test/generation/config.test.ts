import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { FormatError, UsageError } from '../../src/errors.js';
import { resolveGenerationConfig, type GenerationOptions } from '../../src/generation/config.js';

/** The generation_config.json of every reference T5 repo. */
const t5Generation = { _from_model_config: true, decoder_start_token_id: 0, eos_token_id: 1, pad_token_id: 0 };
const t5Model = { model_type: 't5', decoder_start_token_id: 0, eos_token_id: 1, pad_token_id: 0, vocab_size: 1128 };

const resolve = (options: GenerationOptions = {}) =>
  resolveGenerationConfig({ generationConfig: t5Generation, modelConfig: t5Model }, options);

describe('defaults', () => {
  test('transformers 4.37 defaults: max_length 20 (19 new tokens), greedy, top_k 50', () => {
    const c = resolve();
    assert.equal(c.maxNewTokens, 19);
    assert.equal(c.minNewTokens, 0);
    assert.equal(c.numBeams, 1);
    assert.equal(c.doSample, false);
    assert.equal(c.temperature, 1);
    assert.equal(c.topK, 50);
    assert.equal(c.topP, 1);
    assert.equal(c.lengthPenalty, 1);
    assert.equal(c.earlyStopping, false);
    assert.equal(c.numReturnSequences, 1);
    assert.equal(c.repetitionPenalty, 1);
    assert.equal(c.noRepeatNgramSize, 0);
    assert.equal(c.seed, undefined);
    assert.deepEqual(c.eosTokenIds, [1]);
    assert.equal(c.padTokenId, 0);
    assert.equal(c.decoderStartTokenId, 0);
    assert.deepEqual(c.warnings, []);
    assert.ok(Object.isFrozen(c));
  });

  test('user options win over the repo; max_new_tokens wins over max_length', () => {
    const c = resolveGenerationConfig(
      { generationConfig: { ...t5Generation, max_length: 64, num_beams: 4, length_penalty: 0.6 } },
      { maxNewTokens: 256, numBeams: 2 },
    );
    assert.equal(c.maxNewTokens, 256);
    assert.equal(c.numBeams, 2);
    assert.equal(c.lengthPenalty, 0.6);
    assert.equal(resolveGenerationConfig({ generationConfig: { ...t5Generation, max_length: 64 } }).maxNewTokens, 63);
  });

  test('min_length counts the start token; min_new_tokens does not', () => {
    assert.equal(resolveGenerationConfig({ generationConfig: { ...t5Generation, min_length: 5 } }).minNewTokens, 4);
    assert.equal(resolve({ minNewTokens: 6 }).minNewTokens, 6);
  });

  test('token ids fall back to config.json field by field; eos may be a list; pad falls back to eos', () => {
    const c = resolveGenerationConfig({
      generationConfig: { decoder_start_token_id: 0 },
      modelConfig: { eos_token_id: [1, 7], bos_token_id: 5 },
    });
    assert.equal(c.decoderStartTokenId, 0);
    assert.deepEqual(c.eosTokenIds, [1, 7]);
    assert.equal(c.padTokenId, 1);
    assert.equal(resolveGenerationConfig({ modelConfig: { bos_token_id: 5 } }).decoderStartTokenId, 5);
  });

  test('without generation_config.json the generation fields of config.json apply', () => {
    const modelConfig = { ...t5Model, num_beams: 4, max_length: 30, early_stopping: true };
    const c = resolveGenerationConfig({ modelConfig });
    assert.equal(c.numBeams, 4);
    assert.equal(c.maxNewTokens, 29);
    assert.equal(c.earlyStopping, true);
    // ... but not when generation_config.json exists
    const both = resolveGenerationConfig({ generationConfig: t5Generation, modelConfig: { num_beams: 4 } });
    assert.equal(both.numBeams, 1);
  });

  test('eos override replaces the repo ids', () => {
    assert.deepEqual(resolve({ eosTokenId: 798 }).eosTokenIds, [798]);
    assert.deepEqual(resolve({ eosTokenId: [5, 6] }).eosTokenIds, [5, 6]);
  });

  test('settings the mode ignores produce warnings, not errors', () => {
    const c = resolve({ temperature: 0.7, topP: 0.9, seed: 3, lengthPenalty: 2 });
    assert.equal(c.warnings.length, 4);
    assert.match(c.warnings.join('\n'), /temperature is ignored/);
    assert.deepEqual(resolve({ doSample: true, temperature: 0.7, numBeams: 2, lengthPenalty: 2 }).warnings, []);
  });
});

describe('validation', () => {
  const bad: [string, GenerationOptions, RegExp][] = [
    ['num_beams 0', { numBeams: 0 }, /num_beams must be an integer >= 1/],
    ['num_beams 1.5', { numBeams: 1.5 }, /num_beams/],
    ['max_new_tokens 0', { maxNewTokens: 0 }, /max_new_tokens must be an integer >= 1/],
    ['min_new_tokens -1', { minNewTokens: -1 }, /min_new_tokens/],
    ['min > max', { maxNewTokens: 4, minNewTokens: 5 }, /min_new_tokens \(5\) is larger than max_new_tokens \(4\)/],
    ['temperature 0', { doSample: true, temperature: 0 }, /temperature must be a number > 0/],
    ['temperature -1 without sampling', { temperature: -1 }, /temperature/],
    ['top_p 0', { doSample: true, topP: 0 }, /top_p must be in \(0, 1\]/],
    ['top_p 1.5', { doSample: true, topP: 1.5 }, /top_p/],
    ['top_k -1', { doSample: true, topK: -1 }, /top_k must be an integer >= 0/],
    ['repetition_penalty 0', { repetitionPenalty: 0 }, /repetition_penalty must be a number > 0/],
    ['no_repeat_ngram_size -1', { noRepeatNgramSize: -1 }, /no_repeat_ngram_size/],
    ['num_return_sequences > num_beams', { numBeams: 2, numReturnSequences: 3 }, /must not exceed num_beams \(2\)/],
    ['num_return_sequences with greedy', { numReturnSequences: 2 }, /greedy search returns one sequence/],
    ['num_return_sequences 0', { numReturnSequences: 0 }, /num_return_sequences/],
    ['early_stopping "sometimes"', { earlyStopping: 'sometimes' as unknown as boolean }, /early_stopping/],
    ['length_penalty NaN', { lengthPenalty: NaN }, /length_penalty/],
    ['seed -1', { seed: -1 }, /seed/],
    ['empty eos list', { eosTokenId: [] }, /eos_token_id/],
    ['negative eos', { eosTokenId: -1 }, /eos_token_id/],
  ];
  for (const [name, options, message] of bad) {
    test(`${name} is a UsageError`, () => {
      assert.throws(() => resolve(options), (err: unknown) => err instanceof UsageError && message.test(err.message));
    });
  }

  test('sampling with num_return_sequences > 1 is allowed', () => {
    assert.equal(resolve({ doSample: true, numReturnSequences: 3 }).numReturnSequences, 3);
  });

  test('repo values are only checked where they take effect', () => {
    const odd = { ...t5Generation, temperature: 0, top_p: 0 };
    assert.equal(resolveGenerationConfig({ generationConfig: odd }).temperature, 0);
    assert.throws(() => resolveGenerationConfig({ generationConfig: odd }, { doSample: true }), UsageError);
    const fixed = resolveGenerationConfig({ generationConfig: odd }, { doSample: true, temperature: 0.5, topP: 0.9 });
    assert.equal(fixed.topP, 0.9);
  });

  test('max_length 1 leaves nothing to generate', () => {
    assert.throws(() => resolveGenerationConfig({ generationConfig: { ...t5Generation, max_length: 1 } }), UsageError);
  });

  test('malformed files are FormatErrors', () => {
    const withFile = (extra: object) => () =>
      resolveGenerationConfig({ generationConfig: { ...t5Generation, ...extra } });
    assert.throws(withFile({ num_beams: 'four' }), FormatError);
    assert.throws(withFile({ eos_token_id: 'x' }), FormatError);
    assert.throws(() => resolveGenerationConfig({ generationConfig: [] }), FormatError);
    assert.throws(() => resolveGenerationConfig({ generationConfig: { eos_token_id: 1 } }), /decoder_start_token_id/);
  });
});
