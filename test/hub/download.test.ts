/**
 * The Hub client and cache writer against the emulator (test/hub/emulator.ts) serving the tiny-random
 * reference repos: layout identical to huggingface_hub, resume, corruption, offline, gated repos, hostile
 * file names, concurrency, and a cache laid out by hand the way huggingface_hub leaves it.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, mkdir, readFile, readdir, readlink, realpath, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FormatError, HubError, NotFoundError, TfhfError } from '../../src/errors.js';
import { HubClient } from '../../src/hub/client.js';
import { downloadFile, downloadSnapshot, type HubDownloadOptions } from '../../src/hub/download.js';
import { resolveModelDir } from '../../src/hub/resolve.js';
import { needsShared, repoPath } from '../helpers/shared.js';
import { tempDir } from '../helpers/tmp.js';
import { etagOf, fakeCommit, gitBlobSha1, repoFromDir, sha256, startHubEmulator, type HubEmulator } from './emulator.js';

const FLAN = 'tiny-random/flan-t5';
const FOLDER = 'models--tiny-random--flan-t5';

describe('Hub downloads against the emulator', { skip: needsShared }, () => {
  let hub: HubEmulator;
  before(async () => {
    hub = await startHubEmulator([
      repoFromDir(FLAN, repoPath('flan-t5'), { revisions: new Set(['refs/pr/1', 'v1.0']) }),
      repoFromDir('tiny-random/flan-t5-sharded', repoPath('flan-t5-sharded')),
      repoFromDir('tiny-random/flaubert-cased-legacy-bin', repoPath('flaubert-cased-legacy-bin')),
      repoFromDir('tiny-random/gated-t5', repoPath('flan-t5'), { gated: true, allowedTokens: new Set(['hf_good']) }),
    ]);
  });
  after(() => hub.close());

  const session = (cacheDir: string, extra: { token?: string; maxRetries?: number; stallTimeoutMs?: number } = {}): HubDownloadOptions => ({
    cacheDir,
    client: new HubClient({
      endpoint: hub.endpoint,
      token: extra.token,
      retryBaseMs: 5,
      maxRetries: extra.maxRetries ?? 5,
      stallTimeoutMs: extra.stallTimeoutMs ?? 10_000,
      env: {},
    }),
    maxWorkers: 4,
  });
  const source = (name: string, file: string): Promise<Buffer> => readFile(join(repoPath(name), file));

  test('a full download: what tfhf needs, laid out exactly as huggingface_hub does', async () => {
    hub.reset();
    const cache = await tempDir();
    const r = await downloadSnapshot(session(cache), { repoId: FLAN, revision: 'main' });
    const commit = fakeCommit(FLAN);
    assert.equal(r.commit, commit);
    assert.equal(r.snapshot, join(cache, FOLDER, 'snapshots', commit));
    assert.deepEqual(
      [...r.files].sort(),
      ['added_tokens.json', 'config.json', 'generation_config.json', 'model.safetensors', 'special_tokens_map.json', 'spiece.model', 'tokenizer_config.json'],
    );
    assert.equal(await readFile(join(cache, FOLDER, 'refs', 'main'), 'utf8'), commit, 'refs/main: 40 chars, no newline');
    for (const f of r.files) {
      const data = await source('flan-t5', f);
      const pointer = join(r.snapshot, f);
      assert.ok((await lstat(pointer)).isSymbolicLink(), `${f} is a symlink`);
      assert.equal(await readlink(pointer), `../../blobs/${etagOf(f, data)}`, `${f} links relatively to its blob`);
      assert.ok((await readFile(pointer)).equals(data), `${f} content`);
    }
    assert.equal(etagOf('config.json', await source('flan-t5', 'config.json')), gitBlobSha1(await source('flan-t5', 'config.json')));
    const blobs = await readdir(join(cache, FOLDER, 'blobs'));
    assert.equal(blobs.length, r.files.length);
    assert.ok(blobs.every((b) => /^[0-9a-f]{40}$|^[0-9a-f]{64}$/.test(b)), 'no temporaries left');
    assert.ok(!existsSync(join(r.snapshot, 'pytorch_model.bin')), 'safetensors preferred: no .bin');
    assert.ok(existsSync(join(cache, 'CACHEDIR.TAG')));
    // Regular files were fetched through the Hub's relative 307 to /api/resolve-cache; LFS through the CDN.
    assert.ok(hub.requests.some((q) => q.url.startsWith('/api/resolve-cache/')));
    assert.ok(hub.requests.some((q) => q.server === 'cdn' && q.method === 'GET'));
  });

  test('a second run makes zero downloads (one repo-info call, no HEAD, no GET of a file)', async () => {
    const cache = await tempDir();
    await downloadSnapshot(session(cache), { repoId: FLAN, revision: 'main' });
    hub.reset();
    const r = await downloadSnapshot(session(cache), { repoId: FLAN, revision: 'main' });
    assert.deepEqual(r.downloaded, []);
    assert.deepEqual(hub.requests.map((q) => `${q.method} ${q.url.split('?')[0]}`), [`GET /api/models/${FLAN}/revision/main`]);
  });

  test('sharded checkpoints: the index and its shards, no pytorch files; a .bin-only repo gets its .bin', async () => {
    const cache = await tempDir();
    const r = await downloadSnapshot(session(cache), { repoId: 'tiny-random/flan-t5-sharded', revision: 'main' });
    assert.ok(r.files.includes('model.safetensors.index.json'));
    assert.ok(r.files.includes('model-00001-of-00002.safetensors') && r.files.includes('model-00002-of-00002.safetensors'));
    assert.ok(!r.files.some((f) => f.endsWith('.bin') || f.includes('pytorch')));
    const legacy = await downloadSnapshot(session(cache), { repoId: 'tiny-random/flaubert-cased-legacy-bin', revision: 'main' });
    assert.ok(legacy.files.includes('pytorch_model.bin') && legacy.files.includes('vocab.json') && legacy.files.includes('merges.txt'));
  });

  test('explicit files, --include/--exclude globs, --all', async () => {
    const cache = await tempDir();
    const one = await downloadSnapshot(session(cache), { repoId: FLAN, revision: 'main', files: ['config.json'] });
    assert.deepEqual(one.files, ['config.json']);
    const inc = await downloadSnapshot(session(cache), { repoId: FLAN, revision: 'main', include: ['*.json'], exclude: ['added_*'] });
    assert.deepEqual([...inc.files].sort(), ['config.json', 'generation_config.json', 'special_tokens_map.json', 'tokenizer_config.json']);
    const all = await downloadSnapshot(session(cache), { repoId: FLAN, revision: 'main', all: true });
    assert.equal(all.files.length, hub.repos.get(FLAN)?.files.size);
    await assert.rejects(downloadSnapshot(session(cache), { repoId: FLAN, revision: 'main', files: ['nope.json'] }), NotFoundError);
  });

  test('a dropped connection is resumed with Range, in the same run and in the next one; only the rest is sent', async () => {
    const data = await source('flan-t5', 'model.safetensors');
    // Same run: the client resumes by itself.
    hub.reset();
    const cache = await tempDir();
    hub.faults.push({ kind: 'drop', path: 'model.safetensors', afterBytes: 600_000, times: 1 });
    await downloadSnapshot(session(cache), { repoId: FLAN, revision: 'main' });
    assert.equal(hub.bytesSent.get('model.safetensors'), data.length, 'bytes sent = file size: nothing sent twice');
    const ranged = hub.requests.filter((q) => q.server === 'cdn' && q.headers.range);
    assert.deepEqual(ranged.map((q) => q.headers.range), ['bytes=600000-']);
    assert.ok((await readFile(join(cache, FOLDER, 'snapshots', fakeCommit(FLAN), 'model.safetensors'))).equals(data));

    // Next run: no retries allowed, so the first run fails and leaves blobs/<etag>.incomplete for the second.
    hub.reset();
    const cache2 = await tempDir();
    hub.faults.push({ kind: 'drop', path: 'model.safetensors', afterBytes: 300_000, times: 1 });
    await assert.rejects(downloadSnapshot(session(cache2, { maxRetries: 0 }), { repoId: FLAN, revision: 'main' }), HubError);
    const incomplete = join(cache2, FOLDER, 'blobs', `${sha256(data)}.incomplete`);
    assert.equal((await lstat(incomplete)).size, 300_000);
    const r = await downloadSnapshot(session(cache2), { repoId: FLAN, revision: 'main' });
    assert.deepEqual(r.downloaded, ['model.safetensors']);
    assert.equal(hub.bytesSent.get('model.safetensors'), data.length);
    assert.ok(!existsSync(incomplete));
    assert.ok((await readFile(join(r.snapshot, 'model.safetensors'))).equals(data));
  });

  test('a stalled transfer times out and resumes', async () => {
    hub.reset();
    const cache = await tempDir();
    hub.faults.push({ kind: 'stall', path: 'model.safetensors', afterBytes: 100_000, ms: 5_000, times: 1 });
    const t0 = Date.now();
    const r = await downloadSnapshot(session(cache, { stallTimeoutMs: 300 }), { repoId: FLAN, revision: 'main' });
    assert.ok(Date.now() - t0 < 4_000, 'did not wait for the stall to end');
    assert.ok((await readFile(join(r.snapshot, 'model.safetensors'))).equals(await source('flan-t5', 'model.safetensors')));
  });

  test('500s and 429s are retried with backoff (bounded)', async () => {
    hub.reset();
    const cache = await tempDir();
    hub.faults.push({ kind: 'status', status: 500, times: 2 }, { kind: 'status', status: 429, retryAfter: 0, times: 1 });
    const r = await downloadSnapshot(session(cache), { repoId: FLAN, revision: 'main', files: ['config.json'] });
    assert.deepEqual(r.files, ['config.json']);
    hub.faults.push({ kind: 'status', status: 503, times: 100 });
    await assert.rejects(downloadSnapshot(session(await tempDir(), { maxRetries: 2 }), { repoId: FLAN, revision: 'main' }), /503/);
    hub.faults.length = 0;
  });

  test('a corrupted body is detected and not cached; the next run fetches it again', async () => {
    hub.reset();
    const cache = await tempDir();
    hub.faults.push({ kind: 'corrupt', path: 'model.safetensors', times: 1 });
    await assert.rejects(downloadSnapshot(session(cache), { repoId: FLAN, revision: 'main' }), (err: unknown) => {
      assert.ok(err instanceof HubError);
      assert.match(err.message, /model\.safetensors is corrupt.*not cached/);
      return true;
    });
    const sha = sha256(await source('flan-t5', 'model.safetensors'));
    const blobs = await readdir(join(cache, FOLDER, 'blobs'));
    assert.ok(!blobs.some((b) => b.startsWith(sha)), 'neither blob nor .incomplete kept');
    assert.ok(!existsSync(join(cache, FOLDER, 'snapshots', fakeCommit(FLAN), 'model.safetensors')));
    const r = await downloadSnapshot(session(cache), { repoId: FLAN, revision: 'main' });
    assert.deepEqual(r.downloaded, ['model.safetensors']);
  });

  test('offline: zero requests; a missing file names repo, revision, file and cache path', async () => {
    const cache = await tempDir();
    await downloadSnapshot(session(cache), { repoId: FLAN, revision: 'main' });
    hub.reset();
    const offline: HubDownloadOptions = { cacheDir: cache, offline: true };
    const r = await downloadSnapshot(offline, { repoId: FLAN, revision: 'main', files: ['config.json'] });
    assert.equal(r.snapshot, join(cache, FOLDER, 'snapshots', fakeCommit(FLAN)));
    await assert.rejects(downloadFile(offline, { repoId: FLAN, revision: 'main' }, 'pytorch_model.bin'), (err: unknown) => {
      assert.ok(err instanceof NotFoundError);
      assert.ok(err.message.includes('pytorch_model.bin') && err.message.includes(FLAN) && err.message.includes('main'));
      assert.ok(err.message.includes(join(cache, FOLDER)), err.message);
      return true;
    });
    await assert.rejects(downloadSnapshot(offline, { repoId: 'tiny-random/ul2', revision: 'main' }), /offline mode.*tiny-random\/ul2.*main/);
    await assert.rejects(
      resolveModelDir('tiny-random/ul2', { cacheDir: cache, env: { HF_HUB_OFFLINE: '1', HF_ENDPOINT: hub.endpoint } }),
      NotFoundError,
    );
    assert.equal(hub.requests.length, 0);
  });

  test('a gated repo needs the token; the token goes to the Hub and never to the CDN', async () => {
    hub.reset();
    const repoId = 'tiny-random/gated-t5';
    await assert.rejects(downloadSnapshot(session(await tempDir()), { repoId, revision: 'main' }), (err: unknown) => {
      assert.ok(err instanceof HubError && /gated/.test(err.message) && /accept the terms at .*gated-t5.*--token/.test(err.hint ?? ''), String(err));
      return true;
    });
    await assert.rejects(downloadSnapshot(session(await tempDir(), { token: 'hf_other' }), { repoId, revision: 'main' }), /not in the authorized list/);
    await assert.rejects(downloadSnapshot(session(await tempDir(), { token: 'hf_invalid_x' }), { repoId, revision: 'main' }), /invalid or expired/);
    hub.reset();
    const r = await downloadSnapshot(session(await tempDir(), { token: 'hf_good' }), { repoId, revision: 'main' });
    assert.ok(r.files.includes('model.safetensors'));
    const cdn = hub.requests.filter((q) => q.server === 'cdn');
    assert.ok(cdn.length > 0);
    assert.ok(cdn.every((q) => q.headers.authorization === undefined), 'no Authorization on the CDN');
    assert.ok(hub.requests.filter((q) => q.server === 'hub').every((q) => q.headers.authorization === 'Bearer hf_good'));
  });

  test('file names from the API that escape the snapshot are refused', async () => {
    for (const evil of ['../evil.json', '/etc/evil.json', 'a\\..\\..\\evil.json', 'sub/../../evil.json']) {
      const id = `tiny-random/evil-${createHash('sha1').update(evil).digest('hex').slice(0, 6)}`;
      hub.addRepo({ id, commit: fakeCommit(id), files: new Map([['config.json', Buffer.from('{}')]]), extraSiblings: [evil] });
      const cache = await tempDir();
      await assert.rejects(downloadSnapshot(session(cache), { repoId: id, revision: 'main', all: true }), FormatError, evil);
      await assert.rejects(downloadFile(session(cache), { repoId: id, revision: 'main' }, evil), FormatError, evil);
      assert.ok(!existsSync(join(cache, 'evil.json')) && !existsSync(join(cache, '..', 'evil.json')));
    }
  });

  test('two concurrent downloads of the same repo end with one intact copy, transferred once', async () => {
    hub.reset();
    const cache = await tempDir();
    const data = await source('flan-t5', 'model.safetensors');
    const [a, b] = await Promise.all([
      downloadSnapshot(session(cache), { repoId: FLAN, revision: 'main' }),
      downloadSnapshot(session(cache), { repoId: FLAN, revision: 'main' }),
    ]);
    assert.equal(a.snapshot, b.snapshot);
    assert.equal(hub.bytesSent.get('model.safetensors'), data.length);
    assert.equal(sha256(await readFile(join(a.snapshot, 'model.safetensors'))), sha256(data));
    const blobs = await readdir(join(cache, FOLDER, 'blobs'));
    assert.equal(blobs.filter((x) => x.startsWith(sha256(data))).length, 1);
    assert.deepEqual(await readdir(join(cache, '.locks', FOLDER)), [], 'locks released');
  });

  test('errors: unknown repo, unknown revision, missing file (recorded in .no_exist like huggingface_hub)', async () => {
    const cache = await tempDir();
    await assert.rejects(downloadSnapshot(session(cache), { repoId: 'tiny-random/nope', revision: 'main' }), /repository tiny-random\/nope not found/);
    await assert.rejects(downloadSnapshot(session(cache), { repoId: FLAN, revision: 'v9' }), /revision 'v9' not found/);
    await assert.rejects(downloadFile(session(cache), { repoId: FLAN, revision: 'main' }, 'tokenizer.json'), /tokenizer\.json not found/);
    assert.ok(existsSync(join(cache, FOLDER, '.no_exist', fakeCommit(FLAN), 'tokenizer.json')));
    hub.reset();
    await assert.rejects(downloadFile({ cacheDir: cache, offline: true }, { repoId: FLAN, revision: 'main' }, 'tokenizer.json'), /tokenizer\.json does not exist in .*\.no_exist/);
    assert.equal(hub.requests.length, 0);
    for (const e of [NotFoundError]) assert.ok(new e('x') instanceof TfhfError);
  });

  test('refs/pr/N is url-encoded and stored as refs/refs/pr/N; tags get their ref file', async () => {
    hub.reset();
    const cache = await tempDir();
    await downloadSnapshot(session(cache), { repoId: FLAN, revision: 'refs/pr/1', files: ['config.json'] });
    assert.ok(hub.requests.some((q) => q.url === `/api/models/${FLAN}/revision/refs%2Fpr%2F1`));
    assert.equal(await readFile(join(cache, FOLDER, 'refs', 'refs', 'pr', '1'), 'utf8'), fakeCommit(FLAN));
    await downloadFile(session(cache), { repoId: FLAN, revision: 'v1.0' }, 'generation_config.json');
    assert.ok(hub.requests.some((q) => q.method === 'HEAD' && q.url === `/${FLAN}/resolve/v1.0/generation_config.json`));
    assert.equal(await readFile(join(cache, FOLDER, 'refs', 'v1.0'), 'utf8'), fakeCommit(FLAN));
  });

  test('HF_HUB_DISABLE_SYMLINKS-style copies: snapshot files are regular files', async () => {
    const cache = await tempDir();
    const r = await downloadSnapshot({ ...session(cache), disableSymlinks: true }, { repoId: FLAN, revision: 'main', files: ['config.json', 'spiece.model'] });
    for (const f of r.files) {
      assert.ok((await lstat(join(r.snapshot, f))).isFile(), f);
      assert.ok((await readFile(join(r.snapshot, f))).equals(await source('flan-t5', f)));
    }
  });

  test('resolveModelDir downloads a Hub id on first use, then uses the cache without a request', async () => {
    const cache = await tempDir();
    hub.reset();
    const env = { HF_ENDPOINT: hub.endpoint };
    const dir = await resolveModelDir('tiny-random/flan-t5-sharded', { cacheDir: cache, env, log: undefined });
    assert.ok(existsSync(join(dir, 'model-00002-of-00002.safetensors')));
    hub.reset();
    assert.equal(await resolveModelDir('tiny-random/flan-t5-sharded', { cacheDir: cache, env }), dir);
    assert.equal(hub.requests.length, 0);
  });

  test('a cache laid out by hand exactly as huggingface_hub does is used offline with zero requests', async () => {
    hub.reset();
    const cache = await tempDir();
    const commit = '7bcac572ce56db69c1ea7c8af255c5d7c9672fc2';
    const root = join(cache, 'models--google--flan-t5-base');
    await mkdir(join(root, 'blobs'), { recursive: true });
    await mkdir(join(root, 'refs'), { recursive: true });
    await mkdir(join(root, 'snapshots', commit), { recursive: true });
    await mkdir(join(root, '.no_exist', commit), { recursive: true });
    await writeFile(join(root, '.no_exist', commit, 'added_tokens.json'), '');
    await writeFile(join(root, 'refs', 'main'), commit);
    for (const f of ['config.json', 'generation_config.json', 'special_tokens_map.json', 'tokenizer_config.json', 'spiece.model', 'model.safetensors']) {
      const data = await source('flan-t5', f);
      const etag = etagOf(f, data);
      await writeFile(join(root, 'blobs', etag), data);
      await symlink(`../../blobs/${etag}`, join(root, 'snapshots', commit, f));
    }
    const offline: HubDownloadOptions = { cacheDir: cache, offline: true };
    const snap = await downloadSnapshot(offline, { repoId: 'google/flan-t5-base', revision: 'main', files: ['model.safetensors'] });
    assert.equal(snap.snapshot, join(root, 'snapshots', commit));
    const path = await downloadFile(offline, { repoId: 'google/flan-t5-base', revision: commit }, 'spiece.model');
    assert.equal(await realpath(path), await realpath(join(root, 'blobs', etagOf('spiece.model', await source('flan-t5', 'spiece.model')))));
    const dir = await resolveModelDir('google/flan-t5-base', { cacheDir: cache, env: { HF_HUB_OFFLINE: '1', HF_ENDPOINT: hub.endpoint } });
    assert.equal(dir, join(root, 'snapshots', commit));
    // Online too, a cached snapshot is used as is.
    assert.equal(await resolveModelDir('google/flan-t5-base', { cacheDir: cache, env: { HF_ENDPOINT: hub.endpoint } }), dir);
    assert.equal(hub.requests.length, 0);
  });
});
