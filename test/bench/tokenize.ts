/**
 * Tokenizer throughput on ~1 MB of mixed English/French text, in tokens/s (median of runs), against
 * the cost of merely splitting the same text on whitespace in the same process, and, where Debian's
 * python3-sentencepiece is installed, against the SentencePiece C++ library on the same text.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, readdir, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTokenizer } from '../../src/tokenizers/load.js';
import type { Tokenizer } from '../../src/tokenizers/tokenizer.js';
import { median } from './measure.js';

const RUNS = 5;
const TARGET_BYTES = 1_000_000;

/** Lines of real text available here: golden texts (EN/FR/DE) and model-card prose from ../shared/hub. */
async function corpus(sharedDir: string): Promise<string[]> {
  const lines: string[] = [];
  const golden = join(sharedDir, 'reference', 'golden');
  for (const f of await readdir(golden)) {
    if (!f.startsWith('tokenizer-')) continue;
    const data = JSON.parse(await readFile(join(golden, f), 'utf8')) as { cases: { text: string }[] };
    for (const c of data.cases) lines.push(c.text.replace(/\n/g, ' '));
  }
  for (const readme of ['hub/google/flan-ul2/README.md', 'hub/google/flan-t5-large/README.md']) {
    const text = await readFile(join(sharedDir, readme), 'utf8').catch(() => '');
    lines.push(...text.split('\n').filter((l) => l.trim().length > 20));
  }
  const out: string[] = [];
  let bytes = 0;
  for (let i = 0; bytes < TARGET_BYTES; i++) {
    const line = lines[i % lines.length] as string;
    out.push(line);
    bytes += Buffer.byteLength(line) + 1;
  }
  return out;
}

function throughput(tokenizer: Tokenizer, lines: string[]): { tokens: number; seconds: number } {
  const t0 = performance.now();
  let tokens = 0;
  for (const line of lines) tokens += tokenizer.encode(line).ids.length;
  return { tokens, seconds: (performance.now() - t0) / 1000 };
}

function whitespaceSplit(lines: string[]): number {
  const t0 = performance.now();
  let n = 0;
  for (const line of lines) n += line.split(/\s+/).length;
  if (n < 0) throw new Error('unreachable');
  return (performance.now() - t0) / 1000;
}

function sentencepieceSeconds(model: string, textFile: string): number | undefined {
  const script = `import sentencepiece as s, time, sys
p = s.SentencePieceProcessor(model_file=sys.argv[1]); lines = open(sys.argv[2], encoding='utf-8').read().split('\\n')
ts = []
for _ in range(${RUNS}):
    t = time.perf_counter(); [p.encode(l) for l in lines]; ts.append(time.perf_counter() - t)
print(sorted(ts)[len(ts) // 2])`;
  const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3'; // Debian's, where python3-sentencepiece lives
  const r = spawnSync(python, ['-c', script, model, textFile], { encoding: 'utf8' });
  return r.status === 0 ? Number(r.stdout.trim()) : undefined;
}

export async function benchTokenize(sharedDir: string): Promise<string> {
  const lines = await corpus(sharedDir);
  const bytes = lines.reduce((s, l) => s + Buffer.byteLength(l) + 1, 0);
  const textFile = join(tmpdir(), `tfhf-bench-corpus-${process.pid}.txt`);
  await writeFile(textFile, lines.join('\n'));
  const split = median(Array.from({ length: RUNS }, () => whitespaceSplit(lines)));
  const rows: string[] = [];
  try {
    const models: [string, string, string | undefined][] = [
      ['T5 SentencePiece (flan-t5, 32000 pieces)', join(sharedDir, 'hub', 'google', 'flan-t5-large'), 'spiece.model'],
      ['FlauBERT Moses + BPE (flaubert_base_uncased vocabulary)', join(sharedDir, 'hub', '_derived', 'flaubert', 'flaubert_base_uncased'), undefined],
    ];
    for (const [label, dir, spModel] of models) {
      const tokenizer = await loadTokenizer(dir);
      throughput(tokenizer, lines.slice(0, 200)); // warm-up: JIT, caches of the first lines
      const runs = Array.from({ length: RUNS }, () => throughput(tokenizer, lines));
      const secs = median(runs.map((r) => r.seconds));
      const tokens = runs[0]?.tokens ?? 0;
      rows.push(`| ${label} | ${tokens} | ${(tokens / secs / 1e6).toFixed(2)} M | ${(bytes / secs / 2 ** 20).toFixed(1)} | ${(secs / split).toFixed(0)}× |`);
      if (spModel) {
        const sp = sentencepieceSeconds(join(dir, spModel), textFile);
        if (sp !== undefined) {
          rows.push(`| ↳ SentencePiece C++ 0.1.97 (python3-sentencepiece), same text, \`encode\` per line | ${tokens} | ${(tokens / sp / 1e6).toFixed(2)} M | ${(bytes / sp / 2 ** 20).toFixed(1)} | tfhf is ${(secs / sp).toFixed(2)}× its time |`);
        }
      }
    }
  } finally {
    await rm(textFile, { force: true });
  }
  return [
    `${lines.length} lines, ${(bytes / 1e6).toFixed(2)} MB of mixed English/French/German text (golden texts and model-card prose`,
    `from ../shared), encoded line by line with special tokens; median of ${RUNS} runs after a warm-up, in one process.`,
    `Baseline: splitting the same lines on whitespace takes ${(split * 1000).toFixed(1)} ms.`,
    '',
    '| tokenizer | tokens | tokens/s | MiB/s | time vs whitespace split |',
    '|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}
