/**
 * One benchmark process: load a model directory with tfhf and decode N tokens for a batch of fixed
 * 32-token prompts. Prints one JSON line. Times are from process start (performance.timeOrigin).
 * Usage: generate-child.js MODEL_DIR BACKEND BATCH NEW_TOKENS
 */
import { parseBackendChoice } from '../../src/backend/choice.js';
import { generate } from '../../src/generation/index.js';
import { silentLog } from '../../src/log.js';
import { padBatch, Text2TextPipeline } from '../../src/pipelines/text2text.js';

const [dir, backend, batchArg, tokensArg] = process.argv.slice(2);
const batch = Number(batchArg);
const newTokens = Number(tokensArg);

const tLoad0 = performance.now();
const pipeline = await Text2TextPipeline.load(dir as string, { backend: parseBackendChoice(backend as string), log: silentLog });
const tLoaded = performance.now();
// The same prompts as torch_t5.py: 31 tokens + eos.
const rows = Array.from({ length: batch }, (_, r) => [...Array.from({ length: 31 }, (_, i) => ((7 * i + 13 * r) % 1000) + 3), 1]);
const config = pipeline.generationConfig({ maxNewTokens: newTokens, minNewTokens: newTokens });
let tFirst = 0;
const t0 = performance.now();
await generate(pipeline.model, padBatch(rows, 0), config, {
  onToken: (e) => {
    if (e.step === 0 && e.input === 0 && tFirst === 0) tFirst = performance.now();
  },
});
const t1 = performance.now();
pipeline.dispose();
process.stdout.write(
  `${JSON.stringify({
    backend: pipeline.backend.name,
    importS: tLoad0 / 1000,
    loadS: (tLoaded - tLoad0) / 1000,
    warmUpS: (pipeline.model.warmUpMs ?? 0) / 1000,
    firstTokenFromStartS: tFirst / 1000,
    firstTokenS: (tFirst - t0) / 1000,
    msPerToken: (t1 - tFirst) / Math.max(1, newTokens - 1),
    tokensPerS: (batch * newTokens) / ((t1 - t0) / 1000),
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
  })}\n`,
);
