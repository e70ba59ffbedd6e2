/**
 * `tfhf download` and `-m org/name` first-use downloads as a user meets them: bin/tfhf.js spawned against the
 * Hub emulator (HF_ENDPOINT) with HF_HUB_CACHE in a temp dir. The emulator lives in this process, so the CLI
 * is spawned asynchronously (spawnSync would block the emulator's event loop).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { needsShared, repoPath } from '../helpers/shared.js';
import { tempDir } from '../helpers/tmp.js';
import { fakeCommit, repoFromDir, sha256, startHubEmulator, type HubEmulator } from '../hub/emulator.js';
import { BIN, type RunResult } from './helpers.js';

function run(args: string[], env: NodeJS.ProcessEnv): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, NO_COLOR: '1', HF_TOKEN: '', HF_HUB_OFFLINE: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

const FLAN = 'tiny-random/flan-t5';
const FOLDER = 'models--tiny-random--flan-t5';

describe('tfhf download / -m Hub id against the emulator', { skip: needsShared }, () => {
  let hub: HubEmulator;
  before(async () => {
    hub = await startHubEmulator([
      repoFromDir(FLAN, repoPath('flan-t5')),
      repoFromDir('tiny-random/gated-t5', repoPath('flan-t5'), { gated: true, allowedTokens: new Set(['hf_good']) }),
    ]);
  });
  after(() => hub.close());

  const envFor = (cache: string, home: string): NodeJS.ProcessEnv => ({
    HF_ENDPOINT: hub.endpoint,
    HF_HUB_CACHE: cache,
    HF_HOME: home,
    TFHF_HUB_RETRY_BASE_MS: '5',
  });

  test('download prints the snapshot path as the last stdout line; a second run transfers nothing', async () => {
    const cache = await tempDir();
    const env = envFor(cache, await tempDir());
    hub.reset();
    const r = await run(['download', FLAN], env);
    assert.equal(r.code, 0, r.stderr);
    const snapshot = join(cache, FOLDER, 'snapshots', fakeCommit(FLAN));
    assert.equal(r.stdout.trimEnd().split('\n').pop(), snapshot);
    assert.ok(existsSync(join(snapshot, 'model.safetensors')) && !existsSync(join(snapshot, 'pytorch_model.bin')));
    assert.equal(r.stderr.includes('\r'), false, 'no progress bars when stderr is not a terminal');
    hub.reset();
    const again = await run(['download', FLAN], env);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout.trim(), snapshot);
    assert.equal(hub.requests.filter((q) => !q.url.startsWith('/api/models/')).length, 0);
  });

  test('FILES, --include, --local-dir, --offline', async () => {
    const cache = await tempDir();
    const env = envFor(cache, await tempDir());
    const r = await run(['download', FLAN, 'config.json', '--include', '*.model'], env);
    assert.equal(r.code, 0, r.stderr);
    const snapshot = r.stdout.trim();
    assert.deepEqual((await readdir(snapshot)).sort(), ['config.json', 'spiece.model']);
    const local = join(await tempDir(), 'out');
    const l = await run(['download', FLAN, 'config.json', '--local-dir', local], env);
    assert.equal(l.code, 0, l.stderr);
    assert.equal(l.stdout.trim(), local);
    assert.deepEqual(await readFile(join(local, 'config.json')), await readFile(join(repoPath('flan-t5'), 'config.json')));
    const meta = (await readFile(join(local, '.cache', 'huggingface', 'download', 'config.json.metadata'), 'utf8')).split('\n');
    assert.equal(meta[0], fakeCommit(FLAN));
    hub.reset();
    const off = await run(['download', FLAN, 'pytorch_model.bin', '--offline'], env);
    assert.equal(off.code, 3);
    assert.match(off.stderr, /offline mode: file pytorch_model\.bin of tiny-random\/flan-t5 at revision main is not in the cache at /);
    const off2 = await run(['download', FLAN, 'config.json'], { ...env, HF_HUB_OFFLINE: '1' });
    assert.equal(off2.code, 0, off2.stderr);
    assert.equal(off2.stdout.trim(), snapshot);
    assert.equal(hub.requests.length, 0, 'offline: zero requests');
    const copyCache = await tempDir();
    const copied = await run(['download', FLAN, 'config.json'], { ...envFor(copyCache, await tempDir()), HF_HUB_DISABLE_SYMLINKS: '1' });
    assert.equal(copied.code, 0, copied.stderr);
    assert.ok((await lstat(join(copied.stdout.trim(), 'config.json'))).isFile(), 'HF_HUB_DISABLE_SYMLINKS: a copy, not a link');
  });

  test('errors have distinct exit codes: unknown repo 3, gated without token 4, bad repo id 2', async () => {
    const env = envFor(await tempDir(), await tempDir());
    const missing = await run(['download', 'tiny-random/nope'], env);
    assert.equal(missing.code, 3);
    assert.match(missing.stderr, /repository tiny-random\/nope not found/);
    const gated = await run(['download', 'tiny-random/gated-t5'], env);
    assert.equal(gated.code, 4);
    assert.match(gated.stderr, /gated/);
    assert.match(gated.stderr, /accept the terms/);
    const bad = await run(['download', 'a/b/c'], env);
    assert.equal(bad.code, 2);
  });

  test('gated repo with --token / the $HF_HOME/token file; the token never reaches the CDN nor the output', async () => {
    const home = await tempDir();
    const env = envFor(await tempDir(), home);
    hub.reset();
    const r = await run(['download', 'tiny-random/gated-t5', '--token', 'hf_good'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes('hf_good') && !r.stderr.includes('hf_good'));
    const cdn = hub.requests.filter((q) => q.server === 'cdn');
    assert.ok(cdn.length > 0 && cdn.every((q) => q.headers.authorization === undefined));
    await writeFile(join(home, 'token'), 'hf_good\n');
    const viaFile = await run(['download', 'tiny-random/gated-t5', 'config.json'], envFor(await tempDir(), home));
    assert.equal(viaFile.code, 0, viaFile.stderr);
  });

  test('two tfhf processes downloading the same repo at once end with one intact copy', async () => {
    const cache = await tempDir();
    const env = envFor(cache, await tempDir());
    hub.reset();
    const [a, b] = await Promise.all([run(['download', FLAN], env), run(['download', FLAN], env)]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(a.stdout, b.stdout);
    const data = await readFile(join(repoPath('flan-t5'), 'model.safetensors'));
    assert.equal(sha256(await readFile(join(a.stdout.trim(), 'model.safetensors'))), sha256(data));
    const blobs = await readdir(join(cache, FOLDER, 'blobs'));
    assert.deepEqual(blobs.filter((x) => x.startsWith(sha256(data))), [sha256(data)]);
    assert.equal(hub.bytesSent.get('model.safetensors'), data.length, 'transferred once');
  });

  test('generate -m tiny-random/flan-t5 downloads on first use, then runs like the local repo', async () => {
    const cache = await tempDir();
    const env = envFor(cache, await tempDir());
    const args = ['--backend', 'wasm', 'generate', '--json', '--max-new-tokens', '8', 'translate English to German: hello'];
    hub.reset();
    const remote = await run([...args.slice(0, 3), '-m', FLAN, ...args.slice(3)], env);
    assert.equal(remote.code, 0, remote.stderr);
    assert.ok(hub.requests.some((q) => q.server === 'cdn'));
    assert.ok(existsSync(join(cache, FOLDER, 'snapshots', fakeCommit(FLAN), 'model.safetensors')));
    const local = await run([...args.slice(0, 3), '-m', repoPath('flan-t5'), ...args.slice(3)], env);
    assert.equal(local.code, 0, local.stderr);
    assert.equal(remote.stdout, local.stdout);
    hub.reset();
    const again = await run([...args.slice(0, 3), '-m', FLAN, ...args.slice(3)], { ...env, HF_HUB_OFFLINE: '1' });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, local.stdout);
    assert.equal(hub.requests.length, 0);
  });

  test('a full disk is its own error (exit 7), with nothing half-written in the cache', async (t) => {
    // A 1 MiB tmpfs holds the cache; the repo's weights (~3 MB) cannot fit. Mounting needs root (as in CI).
    const mnt = await tempDir();
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt], { encoding: 'utf8' });
    if (mounted.status !== 0) {
      t.skip(`cannot mount a small tmpfs here (${mounted.stderr.trim()})`);
      return;
    }
    try {
      const r = await run(['download', FLAN], envFor(join(mnt, 'hub'), await tempDir()));
      assert.equal(r.code, 7, r.stderr);
      assert.match(r.stderr, /no space left on device/);
      const blobs = join(mnt, 'hub', FOLDER, 'blobs');
      const names = existsSync(blobs) ? await readdir(blobs) : [];
      for (const n of names) assert.ok(!n.endsWith('.safetensors'), n);
      // Every blob present is complete: its name is the hash of its content.
      for (const n of names.filter((x) => !x.includes('.'))) {
        const content = await readFile(join(blobs, n));
        assert.ok(n.length === 64 ? sha256(content) === n : true, `${n} is incomplete`);
      }
    } finally {
      spawnSync('umount', [mnt]);
    }
  });
});
