/** The CLI as a user meets it: spawned bin/tfhf.js, stdout for results, stderr for the rest, exit codes. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { needsShared, projectRoot, repoPath } from '../helpers/shared.js';
import { BIN, tfhf } from './helpers.js';
import { writeRandomSafetensors } from '../bench/synthetic.js';
import { listDir, tempDir } from '../helpers/tmp.js';

describe('tfhf CLI frame', () => {
  test('--version prints the package version', async () => {
    const pkg = JSON.parse(await readFile(join(projectRoot, 'package.json'), 'utf8')) as { version: string };
    const r = tfhf(['--version']);
    assert.equal(r.code, 0);
    assert.equal(r.stdout.trim(), pkg.version);
  });

  test('--help lists the subcommands and global options', () => {
    const r = tfhf(['--help']);
    assert.equal(r.code, 0);
    for (const word of ['convert', 'env', '--backend', '--verbose', '--quiet', '--no-color']) assert.ok(r.stdout.includes(word), word);
  });

  test('convert --help documents its options', () => {
    const r = tfhf(['convert', '--help']);
    assert.equal(r.code, 0);
    for (const word of ['--output', '--dtype', '--shard-size', 'float16', 'uint8']) assert.ok(r.stdout.includes(word), word);
  });

  test('an unknown option is a usage error (exit 2) on stderr', () => {
    const r = tfhf(['convert', '--bogus', 'x']);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /unknown option/);
  });

  test('an invalid --backend is a usage error', () => {
    const r = tfhf(['--backend', 'gpu', 'env']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /backend/);
  });

  test('env --json reports the backend; the fallback is named, never silent', () => {
    const r = tfhf(['env', '--json'], { env: { HF_HOME: '/tmp/hf-home-test', HF_HUB_CACHE: '', HUGGINGFACE_HUB_CACHE: '' } });
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.ok(['tensorflow', 'wasm', 'cpu'].includes(report.backend as string));
    if (report.backend !== 'tensorflow') assert.match(String(report.nativeBackend), /tfjs-node-gpu/);
    assert.equal(report.hubCache, '/tmp/hf-home-test/hub');
  });

  test('env honours --backend cpu and names the backend on stderr with --verbose', () => {
    const r = tfhf(['--backend', 'cpu', '--verbose', 'env']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Backend: cpu/);
    assert.match(r.stderr, /backend: cpu/);
  });
});

describe('tfhf convert', { skip: needsShared }, () => {
  test('prints the output directory on stdout and nothing else', async () => {
    const out = join(await tempDir(), 'flan-t5-tfjs');
    const r = tfhf(['convert', repoPath('flan-t5'), '-o', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${out}\n`);
    assert.match(r.stderr, /converted \d+ tensors/);
    assert.ok((await listDir(out)).includes('model.json'));
  });

  test('--quiet silences stderr', async () => {
    const out = join(await tempDir(), 'o');
    const r = tfhf(['--quiet', 'convert', repoPath('ul2'), '-o', out, '--dtype', 'float16']);
    assert.equal(r.code, 0);
    assert.equal(r.stderr, '');
  });

  test('a missing model directory: one line, exit 3, no stack trace', async () => {
    const root = await tempDir();
    const r = tfhf(['convert', join(root, 'nope'), '-o', join(root, 'out')]);
    assert.equal(r.code, 3);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /does not exist/);
    assert.deepEqual(await listDir(root), []);
  });

  test('--verbose adds the stack trace', async () => {
    const root = await tempDir();
    const r = tfhf(['--verbose', 'convert', join(root, 'nope')]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /\n\s+at /);
  });

  test('a malicious pickle is refused with exit 5 and nothing written', async () => {
    const root = await tempDir();
    const model = join(root, 'model');
    await (await import('node:fs/promises')).mkdir(model);
    await writeFile(join(model, 'config.json'), '{"model_type": "t5"}');
    // Protocol 2: GLOBAL os.system, ('echo pwned',), REDUCE, STOP.
    const pickle = Buffer.concat([
      Buffer.from([0x80, 0x02]),
      Buffer.from('cos\nsystem\n', 'latin1'),
      Buffer.from([0x58]), Buffer.from([10, 0, 0, 0]), Buffer.from('echo pwned', 'latin1'),
      Buffer.from([0x85, 0x52, 0x2e]),
    ]);
    await writeFile(join(model, 'pytorch_model.bin'), pickle);
    const r = tfhf(['convert', model, '-o', join(root, 'out')]);
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, /os\.system/);
    assert.doesNotMatch(r.stdout + r.stderr, /^pwned$/m);
    assert.deepEqual(await listDir(root), ['model']);
  });

  test('bad --shard-size is a usage error', () => {
    const r = tfhf(['convert', repoPath('flan-t5'), '--shard-size', 'lots']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /shard-size/);
  });
});

describe('interruption', () => {
  test('Ctrl-C during convert exits 130 and removes the partial output', async () => {
    const root = await tempDir();
    const model = join(root, 'model');
    await mkdir(model);
    await writeFile(join(model, 'config.json'), '{"model_type": "t5"}');
    // Large enough (~200 MB) that the conversion is still writing shards when the signal arrives.
    const shapes: [string, number[]][] = Array.from({ length: 50 }, (_, i) => [`w${i}`, [1024, 1024]]);
    await writeRandomSafetensors(join(model, 'model.safetensors'), shapes);
    const child = spawn(process.execPath, [BIN, 'convert', model, '-o', join(root, 'out'), '--shard-size', '65536'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
    // Wait until the temporary output exists, then interrupt.
    for (let i = 0; i < 2000; i++) {
      if ((await readdir(root)).some((n) => n.startsWith('.tfhf-tmp-'))) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    child.kill('SIGINT');
    assert.equal(await exited, 130, stderr);
    assert.match(stderr, /interrupted/);
    assert.deepEqual(await listDir(root), ['model']);
  });
});
