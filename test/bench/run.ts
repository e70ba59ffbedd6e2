/**
 * `npm run bench [-- NAME...]`: runs the benchmarks and rewrites their sections of docs/performance.md
 * (sections of benchmarks not run are kept). Figures are medians and ratios to a baseline run alongside.
 */
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchConvert } from './convert.js';
import { benchFillMask } from './fill-mask.js';
import { benchGenerate } from './generate.js';
import { benchTokenize } from './tokenize.js';
import { machine } from './measure.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const sharedDir = process.env.TFHF_SHARED_DIR ?? resolve(root, '..', 'shared');
const hubDir = join(sharedDir, 'hub');

const BENCHES: Record<string, { title: string; run: () => Promise<string> }> = {
  convert: { title: 'Conversion (`tfhf convert`)', run: () => benchConvert(root, hubDir) },
  generate: { title: 'Generation (`tfhf generate`, flan-t5-small shapes)', run: () => benchGenerate(root, hubDir) },
  'fill-mask': { title: 'Fill-mask (`tfhf fill-mask`, flaubert_base_cased shapes)', run: () => benchFillMask(sharedDir) },
  tokenize: { title: 'Tokenizers (`tfhf tokenize`)', run: () => benchTokenize(sharedDir) },
};

const DOC = join(root, 'docs', 'performance.md');

function section(name: string, title: string, body: string): string {
  const stamp = `${new Date().toISOString().slice(0, 10)}; ${machine()}`;
  return `<!-- bench:${name} -->\n## ${title}\n\nMeasured ${stamp}.\n\n${body}\n<!-- /bench:${name} -->`;
}

async function main(): Promise<void> {
  if (!existsSync(hubDir)) throw new Error(`benchmarks need ${hubDir} (the real Hub configs)`);
  const wanted = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(BENCHES);
  let doc = existsSync(DOC)
    ? await readFile(DOC, 'utf8')
    : '# Performance\n\nWritten by `npm run bench`; each section is replaced when its benchmark runs again.\n';
  for (const name of wanted) {
    const bench = BENCHES[name];
    if (!bench) throw new Error(`unknown benchmark ${name}; known: ${Object.keys(BENCHES).join(', ')}`);
    process.stderr.write(`bench: ${name}…\n`);
    const body = await bench.run();
    const text = section(name, bench.title, body);
    const re = new RegExp(`<!-- bench:${name} -->[\\s\\S]*?<!-- /bench:${name} -->`);
    doc = re.test(doc) ? doc.replace(re, text) : `${doc.trimEnd()}\n\n${text}\n`;
    process.stdout.write(`${text}\n`);
  }
  await writeFile(DOC, doc);
}

await main();
