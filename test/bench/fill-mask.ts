/** fill-mask sentences/s on a random-weight model with flaubert_base_cased dimensions, batch 1 vs batch 16. */
import { spawnSync } from 'node:child_process';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, MiB } from './measure.js';
import { flaubertTensorShapes, writeRandomSafetensors } from './synthetic.js';

const RUNS = 3;
const here = dirname(fileURLToPath(import.meta.url));

/** flaubert/flaubert_base_cased: 12 layers, 12 heads, emb_dim 768, vocab 68729 (issue 5). */
const BASE_CASED = { emb_dim: 768, n_layers: 12, n_heads: 12, vocab_size: 68729, max_position_embeddings: 512 };

export async function benchFillMask(sharedDir: string): Promise<string> {
  const work = join(tmpdir(), `tfhf-bench-fill-mask-${process.pid}`);
  const dir = join(work, 'flaubert-base-cased-random');
  await mkdir(dir, { recursive: true });
  // Config of the tiny reference model with the real base dimensions; the real Hub vocabulary and merges.
  const tiny = JSON.parse(await readFile(join(sharedDir, 'reference', 'repos', 'tiny-random', 'flaubert-cased', 'config.json'), 'utf8')) as Record<string, unknown>;
  await writeFile(join(dir, 'config.json'), JSON.stringify({ ...tiny, ...BASE_CASED }));
  const vocabDir = join(sharedDir, 'hub', '_derived', 'flaubert', 'flaubert_base_uncased');
  for (const f of ['vocab.json', 'merges.txt']) await copyFile(join(vocabDir, f), join(dir, f));
  const bytes = await writeRandomSafetensors(join(dir, 'model.safetensors'), flaubertTensorShapes(BASE_CASED));
  const rows: string[] = [];
  try {
    const results: Record<number, Record<string, number>[]> = {};
    for (const [batch, count] of [[1, 16], [16, 64]] as const) {
      results[batch] = Array.from({ length: RUNS }, () => {
        const r = spawnSync(process.execPath, [join(here, 'fill-mask-child.js'), dir, String(batch), String(count)], { encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`fill-mask bench failed: ${r.stderr}`);
        return JSON.parse(r.stdout.trim()) as Record<string, number>;
      });
    }
    const m = (batch: number, key: string): number => median((results[batch] ?? []).map((r) => r[key] as number));
    for (const batch of [1, 16]) {
      rows.push(
        `| ${batch} | ${m(batch, 'sentencesPerS').toFixed(2)} | ${(m(batch, 'sentencesPerS') / m(1, 'sentencesPerS')).toFixed(2)}× | ${m(batch, 'loadS').toFixed(2)} | ${(m(batch, 'maxRssBytes') / MiB).toFixed(0)} (${(m(batch, 'maxRssBytes') / bytes).toFixed(2)}× weights) |`,
      );
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return [
    `Random weights with flaubert_base_cased dimensions (${(bytes / MiB).toFixed(0)} MiB float32), wasm backend, 10–14-token French`,
    `sentences with one mask, top-5; the first batch (packing warm-up) is excluded; median of ${RUNS} processes.`,
    '',
    '| batch | sentences/s | vs batch 1 | load s | peak RSS MiB |',
    '|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}
