/**
 * One fill-mask benchmark process: load a FlauBERT directory, run SENTENCES masked sentences in batches of
 * BATCH, print one JSON line. Usage: fill-mask-child.js MODEL_DIR BATCH SENTENCES
 */
import { silentLog } from '../../src/log.js';
import { FillMaskPipeline } from '../../src/pipelines/fill-mask.js';

const [dir, batchArg, countArg] = process.argv.slice(2);
const batch = Number(batchArg);
const count = Number(countArg);
const BASE = [
  'Le chat mange une <special1> dans la cuisine .',
  'Paris est la <special1> de la France .',
  'Il fait très <special1> aujourd\'hui à Marseille .',
  'Elle a lu un <special1> passionnant pendant les vacances .',
];
const texts = Array.from({ length: count }, (_, i) => BASE[i % BASE.length] as string);

const t0 = performance.now();
const pipeline = await FillMaskPipeline.load(dir as string, { backend: 'wasm', log: silentLog });
const tLoaded = performance.now();
pipeline.run(texts.slice(0, batch)); // first batch shapes: pays any remaining packing
const t1 = performance.now();
for (let i = 0; i < texts.length; i += batch) pipeline.run(texts.slice(i, i + batch));
const t2 = performance.now();
pipeline.dispose();
process.stdout.write(
  `${JSON.stringify({
    loadS: (tLoaded - t0) / 1000,
    firstBatchS: (t1 - tLoaded) / 1000,
    sentencesPerS: count / ((t2 - t1) / 1000),
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
  })}\n`,
);
