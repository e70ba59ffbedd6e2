/**
 * Generation speed on a random-weight model with the real flan-t5-small config: per backend, load time,
 * time to first token, ms per token (batch 1, 64 tokens), tokens/s at batch 8, peak RSS — each a median
 * of separate processes — against the same work in PyTorch (test/bench/torch_t5.py) when Debian's
 * python3-torch is installed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { engineThreads } from '../../src/backend/matvec/engine.js';
import { median, MiB } from './measure.js';
import { makeRandomT5Dir, type T5ShapeConfig } from './synthetic.js';

const RUNS = 3;
const NEW_TOKENS = 64;
const here = dirname(fileURLToPath(import.meta.url));

interface ChildResult {
  backend?: string;
  startupS: number;
  firstTokenFromStartS?: number;
  firstTokenS: number;
  msPerToken: number;
  tokensPerS: number;
  maxRssBytes: number;
}

function runJson(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Record<string, number | string> {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 20, env });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() as string) as Record<string, number | string>;
}

function tfhfRun(dir: string, backend: string, batch: number, tokens: number, threads?: number): ChildResult {
  const env = threads === undefined ? process.env : { ...process.env, TFHF_NUM_THREADS: String(threads) };
  const j = runJson(process.execPath, [join(here, 'generate-child.js'), dir, backend, String(batch), String(tokens)], env);
  return {
    backend: j.backend as string,
    startupS: (j.importS as number) + (j.loadS as number),
    firstTokenFromStartS: j.firstTokenFromStartS as number,
    firstTokenS: j.firstTokenS as number,
    msPerToken: j.msPerToken as number,
    tokensPerS: j.tokensPerS as number,
    maxRssBytes: j.maxRssBytes as number,
  };
}

function torchRun(dir: string, batch: number, tokens: number): ChildResult {
  const j = runJson('/usr/bin/python3', [join(here, '..', '..', '..', 'test', 'bench', 'torch_t5.py'), dir, String(batch), String(tokens)]);
  return {
    startupS: j.startup_s as number,
    firstTokenS: j.first_token_s as number,
    msPerToken: j.ms_per_token as number,
    tokensPerS: j.tokens_per_s as number,
    maxRssBytes: j.max_rss_bytes as number,
  };
}

function med(runs: ChildResult[], key: keyof ChildResult): number {
  return median(runs.map((r) => r[key] as number));
}

function torchAvailable(): boolean {
  return spawnSync('/usr/bin/python3', ['-c', 'import torch, numpy'], { encoding: 'utf8' }).status === 0;
}

export async function benchGenerate(root: string, hubDir: string): Promise<string> {
  const hubModel = join(hubDir, 'google', 'flan-t5-small');
  const config = JSON.parse(await readFile(join(hubModel, 'config.json'), 'utf8')) as T5ShapeConfig;
  const work = join(tmpdir(), `tfhf-bench-generate-${process.pid}`);
  const hfDir = join(work, 'flan-t5-small');
  const weightBytes = await makeRandomT5Dir(hubModel, hfDir, config);
  const converted = join(work, 'flan-t5-small-tfjs');
  const convert = spawnSync(process.execPath, [join(root, 'bin', 'tfhf.js'), '--quiet', 'convert', hfDir, '-o', converted], { encoding: 'utf8' });
  if (convert.status !== 0) throw new Error(`convert failed: ${convert.stderr}`);
  const rows: string[] = [];
  const fmt = (label: string, one: ChildResult[], eight: ChildResult[], base?: { one: ChildResult[]; eight: ChildResult[] }): string => {
    const ms = med(one, 'msPerToken');
    const tps = med(eight, 'tokensPerS');
    const ratio = (x: number, y: number | undefined): string => (y === undefined ? '' : ` (${(x / y).toFixed(2)}×)`);
    const fromStart = one[0]?.firstTokenFromStartS === undefined ? med(one, 'startupS') + med(one, 'firstTokenS') : med(one, 'firstTokenFromStartS');
    const baseFromStart = base ? med(base.one, 'startupS') + med(base.one, 'firstTokenS') : undefined;
    return `| ${label} | ${med(one, 'startupS').toFixed(2)} | ${fromStart.toFixed(2)}${ratio(fromStart, baseFromStart)} | ${ms.toFixed(1)}${ratio(ms, base ? med(base.one, 'msPerToken') : undefined)} | ${tps.toFixed(0)}${ratio(tps, base ? med(base.eight, 'tokensPerS') : undefined)} | ${(med(one, 'maxRssBytes') / MiB).toFixed(0)} (${(med(one, 'maxRssBytes') / weightBytes).toFixed(2)}× weights) |`;
  };
  try {
    let base: { one: ChildResult[]; eight: ChildResult[] } | undefined;
    if (torchAvailable()) {
      base = {
        one: Array.from({ length: RUNS }, () => torchRun(hfDir, 1, NEW_TOKENS)),
        eight: Array.from({ length: RUNS }, () => torchRun(hfDir, 8, NEW_TOKENS)),
      };
      rows.push(fmt('PyTorch 1.13 (Debian), same model and prompts (baseline)', base.one, base.eight));
    }
    const cores = engineThreads({});
    const runs: [string, string, number | undefined][] = [
      [`tfhf wasm, converted dir (${cores} threads)`, converted, undefined],
      ['tfhf wasm, converted dir, TFHF_NUM_THREADS=1', converted, 1],
      [`tfhf wasm, safetensors dir (${cores} threads)`, hfDir, undefined],
    ];
    for (const [label, dir, threads] of runs) {
      const one = Array.from({ length: RUNS }, () => tfhfRun(dir, 'wasm', 1, NEW_TOKENS, threads));
      const eight = Array.from({ length: RUNS }, () => tfhfRun(dir, 'wasm', 8, NEW_TOKENS, threads));
      rows.push(fmt(label, one, eight, base));
    }
    // The cpu backend is a fallback 10–40× slower: one short run says how much.
    const cpuOne = [tfhfRun(converted, 'cpu', 1, 8)];
    const cpuEight = [tfhfRun(converted, 'cpu', 8, 4)];
    rows.push(fmt('tfhf cpu backend, converted dir (8 / 4 tokens, 1 run)', cpuOne, cpuEight, base));
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const native = existsSync(join(root, 'node_modules', '@tensorflow', 'tfjs-node-gpu', 'lib', 'napi-v8', 'tfjs_binding.node'));
  return [
    `Random weights with the real flan-t5-small config (${(weightBytes / MiB).toFixed(0)} MiB float32), prompts of 32 tokens,`,
    `${NEW_TOKENS} new tokens (min-new-tokens so nothing stops early), greedy; each figure the median of ${RUNS} processes.`,
    'Start-up = process start to model ready (imports, weights, wasm warm-up); first token is counted from process start.',
    'ms/token is counted from the first token (the encoder runs before it). Threads: the matvec engine\'s, for the',
    'decode step\'s matrix products (tfjs itself runs on one); TFHF_NUM_THREADS=1 shows what the second core adds.',
    'Ratios in brackets are against the PyTorch row (time: lower is better; tokens/s: higher is better).',
    native ? '' : 'The native backend (tfjs-node-gpu) is not installed on this machine, so it has no row.',
    '',
    '| run | start-up s | first token from start s | ms/token, batch 1 | tokens/s, batch 8 | peak RSS MiB, batch 1 |',
    '|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}
