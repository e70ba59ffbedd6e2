/**
 * The memory budget checked before a model's weights are opened: float32 weight bytes from the real
 * FLAN-T5 configs (read in place from ../shared/hub), twice that on wasm under the ~3.5 GiB heap.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { checkMemoryBudget, memoryNeed } from '../../src/backend/budget.js';
import { ExitCode, UnsupportedError } from '../../src/errors.js';
import { parseT5Config } from '../../src/models/t5/config.js';
import { t5EngineBytes, t5WeightBytes } from '../../src/models/t5/model.js';
import { MAX_ENGINE_BYTES } from '../../src/backend/matvec/engine.js';
import { hubDir, needsShared } from '../helpers/shared.js';

const GiB = 2 ** 30;

async function weightBytes(size: 'small' | 'base' | 'large'): Promise<number> {
  const path = join(hubDir, 'google', `flan-t5-${size}`, 'config.json');
  return t5WeightBytes(parseT5Config(JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>));
}

describe('memoryNeed', () => {
  test('wasm: twice the weight bytes against a fixed heap limit below 4 GiB', () => {
    const need = memoryNeed('wasm', 1000);
    assert.equal(need.bytes, 2000);
    assert.ok(need.limit > 3 * GiB && need.limit < 4 * GiB, String(need.limit));
    assert.equal(need.where, 'the wasm heap');
    assert.equal(memoryNeed('wasm', 5).limit, need.limit);
  });

  test('cpu and tensorflow: one copy of the weights against free memory', () => {
    for (const backend of ['cpu', 'tensorflow'] as const) {
      const need = memoryNeed(backend, 1000);
      assert.equal(need.bytes, 1000);
      assert.ok(need.limit > 0);
      assert.equal(need.where, 'free memory');
    }
  });
});

describe('checkMemoryBudget', () => {
  test('wasm: passes up to the limit, refuses one byte more', () => {
    const limit = memoryNeed('wasm', 0).limit;
    assert.doesNotThrow(() => checkMemoryBudget('wasm', limit / 2, 'edge'));
    assert.throws(() => checkMemoryBudget('wasm', limit / 2 + 1, 'edge'), UnsupportedError);
  });

  test('native: more weights than free memory is refused with a hint to free memory', () => {
    const huge = memoryNeed('tensorflow', 0).limit + GiB;
    assert.throws(
      () => checkMemoryBudget('tensorflow', huge, 'huge-model'),
      (err: unknown) => {
        assert.ok(err instanceof UnsupportedError);
        assert.equal(err.exitCode, ExitCode.unsupported);
        assert.match(err.message, /^huge-model needs about .* GiB on the tensorflow backend/);
        assert.match(err.message, /of free memory$/);
        assert.match(err.hint ?? '', /free memory or pick a smaller model/);
        return true;
      },
    );
  });
});

describe('checkMemoryBudget on the real FLAN-T5 configs', { skip: needsShared }, () => {
  test('t5WeightBytes: 4 bytes per parameter of the published checkpoints', async () => {
    // transformers' num_parameters() of google/flan-t5-{small,base,large} (untied lm_head included).
    assert.equal(await weightBytes('small'), 4 * 76_961_152);
    assert.equal(await weightBytes('base'), 4 * 247_577_856);
    assert.equal(await weightBytes('large'), 4 * 783_150_080);
  });

  test('the matvec engine takes the decode-step matrices up to flan-t5-large; flan-ul2 keeps them as tensors', async () => {
    const config = async (name: string): Promise<ReturnType<typeof parseT5Config>> =>
      parseT5Config(JSON.parse(await readFile(join(hubDir, 'google', name, 'config.json'), 'utf8')) as Record<string, unknown>);
    for (const name of ['flan-t5-small', 'flan-t5-base', 'flan-t5-large']) {
      assert.ok(t5EngineBytes(await config(name)) <= MAX_ENGINE_BYTES, name);
    }
    assert.ok(t5EngineBytes(await config('flan-ul2')) > MAX_ENGINE_BYTES);
  });

  test('flan-t5-small and flan-t5-base fit the wasm heap', async () => {
    for (const size of ['small', 'base'] as const) {
      const bytes = await weightBytes(size);
      const need = memoryNeed('wasm', bytes);
      assert.ok(need.bytes <= need.limit, `${size}: ${need.bytes} > ${need.limit}`);
      assert.doesNotThrow(() => checkMemoryBudget('wasm', bytes, `google/flan-t5-${size}`));
    }
  });

  test('flan-t5-large does not fit wasm: exit 6, the need in GiB, the native backend named', async () => {
    const bytes = await weightBytes('large');
    const need = memoryNeed('wasm', bytes);
    assert.ok(need.bytes > need.limit);
    assert.throws(
      () => checkMemoryBudget('wasm', bytes, 'google/flan-t5-large'),
      (err: unknown) => {
        assert.ok(err instanceof UnsupportedError);
        assert.equal(err.exitCode, ExitCode.unsupported);
        const gib = (n: number): string => `${(n / GiB).toFixed(1)} GiB`;
        assert.equal(
          err.message,
          `google/flan-t5-large needs about ${gib(need.bytes)} on the wasm backend (${gib(bytes)} of float32 weights), more than the ${gib(need.limit)} of the wasm heap`,
        );
        assert.match(err.hint ?? '', /native backend/);
        assert.match(err.hint ?? '', /--backend tensorflow/);
        assert.ok(!err.message.includes('\n') && !(err.hint ?? '').includes('\n'));
        return true;
      },
    );
  });
});
