/**
 * Downloads into the huggingface_hub cache, leaving exactly the layout Python reads (hub-protocol.md §5):
 * blobs/<etag>, snapshots/<commit>/<path> → relative symlink (or a copy), refs/<revision>, .no_exist markers.
 * Bytes go to blobs/<etag>.incomplete (resumed with Range), are checked (size, sha256 / git sha1 against the
 * etag) and renamed into place under a per-blob lock, so concurrent tfhf processes never corrupt a blob.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, lstat, mkdir, open, readFile, readlink, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { FormatError, HubError, NotFoundError, ioErrorFrom } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { cachedCommit } from './cache.js';
import { EntryNotFoundError, HubClient, isRetryableNetworkError, sleep, type FileMetadata } from './client.js';
import { repoFolderName, type RepoRef } from './repo-id.js';
import { pathExists as exists } from '../io/fs.js';

const COMMIT = /^[0-9a-f]{40}$/;
const SHA256 = /^[0-9a-f]{64}$/;

export interface DownloadProgress {
  fileStart(path: string, size: number | undefined): void;
  fileAdvance(path: string, bytes: number): void;
  fileDone(path: string): void;
}

export interface HubDownloadOptions {
  cacheDir: string;
  /** Absent in offline mode: no request is ever made. */
  client?: HubClient | undefined;
  offline?: boolean;
  maxWorkers?: number;
  progress?: DownloadProgress | undefined;
  /** Copy files into the snapshot instead of symlinking (also HF_HUB_DISABLE_SYMLINKS=1). */
  disableSymlinks?: boolean;
  /** How long to wait for another process holding a blob lock. */
  lockTimeoutMs?: number;
  /** Called for each file whose bytes were actually transferred. */
  onDownloaded?: (path: string) => void;
}

const CACHEDIR_TAG =
  'Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by huggingface_hub.\n# For information about cache directory tags, see:\n#\thttps://bford.info/cachedir/\n';

/** Refuses repo file names that could escape the snapshot directory (`../`, absolute, backslashes, NUL). */
export function checkRepoPath(path: string): string {
  const bad =
    path === '' ||
    path.startsWith('/') ||
    path.includes('\\') ||
    path.includes('\0') ||
    /^[A-Za-z]:/.test(path) ||
    path.split('/').some((seg) => seg === '' || seg === '.' || seg === '..');
  if (bad) {
    throw new FormatError(`refusing file name '${path}' from the Hub: it would escape the snapshot directory`, {
      hint: 'the repository lists a file path that is absolute, contains .. or a backslash',
    });
  }
  return path;
}

function inside(root: string, path: string): string {
  const full = resolve(root, ...checkRepoPath(path).split('/'));
  if (!full.startsWith(resolve(root) + sep)) throw new FormatError(`refusing file name '${path}': outside ${root}`);
  return full;
}


async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

export function repoDir(cacheDir: string, repoId: string): string {
  return join(cacheDir, repoFolderName(repoId));
}

/** Writes refs/<revision> (atomically, only when it changes); a commit revision needs no ref. */
export async function writeRef(cacheDir: string, ref: RepoRef, commit: string): Promise<void> {
  if (ref.revision === commit) return;
  const path = join(repoDir(cacheDir, ref.repoId), 'refs', ...ref.revision.split('/').map((s) => checkRepoPath(s)));
  try {
    if ((await readFile(path, 'utf8')) === commit) return;
  } catch {
    // absent
  }
  try {
    await mkdir(dirname(path), { recursive: true });
  } catch (err) {
    throw ioErrorFrom(err, dirname(path), 'create directory');
  }
  await writeFileAtomic(path, commit);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * An exclusive lock file (created with O_EXCL, holding the pid). A lock whose process is gone is stale and
 * taken over. (Python's filelock uses flock on `<etag>.lock`, which Node cannot take; ours is beside it.)
 */
export async function withLock<T>(lockPath: string, timeoutMs: number, fn: () => Promise<T>): Promise<T> {
  await mkdir(dirname(lockPath), { recursive: true });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const h = await open(lockPath, 'wx', 0o664);
      await h.writeFile(String(process.pid));
      await h.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw ioErrorFrom(err, lockPath, 'create lock');
    }
    let holder = NaN;
    try {
      holder = Number(await readFile(lockPath, 'utf8'));
    } catch {
      continue;
    }
    if (Number.isInteger(holder) && holder > 0 && !pidAlive(holder)) {
      await rm(lockPath, { force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new HubError(`timed out waiting for lock ${lockPath} held by process ${holder}`, {
        hint: 'another tfhf is downloading the same file; if none is running, delete the lock file',
      });
    }
    await sleep(50);
  }
  try {
    return await fn();
  } finally {
    await rm(lockPath, { force: true });
  }
}

async function gitBlobSha1File(path: string, size: number): Promise<string> {
  const h = createHash('sha1').update(`blob ${size}\0`);
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function sha256OfFile(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Verifies size and content hash against the metadata; a mismatch is never cached. */
async function verify(tmp: string, path: string, meta: FileMetadata): Promise<void> {
  const size = await sizeOf(tmp);
  if (meta.size !== undefined && size !== meta.size) {
    throw new HubError(`consistency check failed for ${path}: expected ${meta.size} bytes, received ${size}`, {
      hint: 'the download was cut short; run the command again to resume',
    });
  }
  let actual: string | undefined;
  if (SHA256.test(meta.etag)) actual = await sha256OfFile(tmp);
  else if (COMMIT.test(meta.etag)) actual = await gitBlobSha1File(tmp, size);
  if (actual !== undefined && actual !== meta.etag) {
    await rm(tmp, { force: true });
    throw new HubError(`${path} is corrupt: its hash is ${actual} but the Hub announced ${meta.etag}; it was not cached`, {
      hint: 'run the command again; if it persists, a proxy or the network alters the data',
    });
  }
}

/** GETs `url` into `tmp`, resuming from what `tmp` already holds, with bounded retries on cut/stalled transfers. */
async function fetchInto(client: HubClient, ref: RepoRef, url: string, tmp: string, path: string, meta: FileMetadata, progress?: DownloadProgress): Promise<void> {
  let failures = 0;
  for (;;) {
    let have = await sizeOf(tmp);
    if (meta.size !== undefined && have > meta.size) {
      await rm(tmp, { force: true });
      have = 0;
    }
    if (meta.size !== undefined && have === meta.size && have > 0) return;
    const r = await client.sendWithRetry('GET', url, have > 0 ? { range: `bytes=${have}-` } : {});
    if (r.statusCode === 416 && have > 0) {
      await r.body.dump();
      await rm(tmp, { force: true });
      if (++failures > client.maxRetries) throw new HubError(`cannot resume ${path}: the server refused the range`);
      continue;
    }
    if (r.statusCode >= 400) throw await client.errorFor(r, { ...ref, path });
    if (r.statusCode >= 300) {
      await r.body.dump();
      throw new HubError(`unexpected redirect (${r.statusCode}) when downloading ${path}`);
    }
    const append = r.statusCode === 206 && have > 0;
    if (!append && have > 0) progress?.fileAdvance(path, -have);
    let handle;
    try {
      handle = await open(tmp, append ? 'a' : 'w');
    } catch (err) {
      await r.body.dump();
      throw ioErrorFrom(err, tmp, 'write');
    }
    let received = 0;
    try {
      for await (const chunk of r.body) {
        const buf = chunk as Buffer;
        try {
          await handle.write(buf);
        } catch (err) {
          throw ioErrorFrom(err, tmp, 'write');
        }
        received += buf.length;
        progress?.fileAdvance(path, buf.length);
      }
      return;
    } catch (err) {
      if (!isRetryableNetworkError(err)) throw err;
      if (received > 0) failures = 0;
      if (++failures > client.maxRetries) {
        throw new HubError(`download of ${path} failed after ${client.maxRetries} retries: ${(err as Error).message}`, {
          hint: 'run the command again: the partial file is kept and the download resumes',
          cause: err,
        });
      }
      await sleep(Math.min(client.retryBaseMs * 2 ** (failures - 1), client.retryBaseMs * 8));
    } finally {
      await handle.close();
    }
  }
}

/** Points snapshots/<commit>/<path> at the blob: a relative symlink, or a copy where symlinks are off / fail. */
async function linkIntoSnapshot(blob: string, pointer: string, copy: boolean): Promise<void> {
  await mkdir(dirname(pointer), { recursive: true });
  const tmp = `${pointer}.tfhf-${process.pid}-${Math.random().toString(16).slice(2)}`;
  try {
    if (copy) await copyFile(blob, tmp);
    else {
      try {
        await symlink(relative(dirname(pointer), blob), tmp);
      } catch {
        await copyFile(blob, tmp);
      }
    }
    await rename(tmp, pointer);
  } catch (err) {
    await rm(tmp, { force: true });
    throw ioErrorFrom(err, pointer, 'write');
  }
}

function symlinksDisabled(opts: HubDownloadOptions): boolean {
  return opts.disableSymlinks === true || ['1', 'ON', 'YES', 'TRUE'].includes((process.env.HF_HUB_DISABLE_SYMLINKS ?? '').toUpperCase());
}

function offlineMissing(cacheDir: string, ref: RepoRef, path: string | undefined): NotFoundError {
  const where = repoDir(cacheDir, ref.repoId);
  return new NotFoundError(
    `offline mode: ${path ? `file ${path} of ` : ''}${ref.repoId} at revision ${ref.revision} is not in the cache at ${where}`,
    { hint: 'run once without --offline / HF_HUB_OFFLINE=1 to download it, or point HF_HUB_CACHE / --cache-dir at a cache that has it' },
  );
}

/**
 * One file of a repo revision into the cache (HH `_hf_hub_download_to_cache_dir`); returns the snapshot path.
 * With a commit revision whose snapshot already has the file, no request is made.
 */
export async function downloadFile(opts: HubDownloadOptions, ref: RepoRef, path: string): Promise<string> {
  checkRepoPath(path);
  const root = repoDir(opts.cacheDir, ref.repoId);
  if (COMMIT.test(ref.revision)) {
    const pointer = inside(join(root, 'snapshots', ref.revision), path);
    if (await exists(pointer)) return pointer;
  }
  if (opts.offline || !opts.client) {
    const commit = await cachedCommit(opts.cacheDir, ref);
    if (commit) {
      const pointer = inside(join(root, 'snapshots', commit), path);
      if (await exists(pointer)) return pointer;
      if (await exists(inside(join(root, '.no_exist', commit), path))) {
        throw new NotFoundError(`file ${path} does not exist in ${ref.repoId} at revision ${ref.revision} (recorded in ${join(root, '.no_exist', commit)})`);
      }
    }
    throw offlineMissing(opts.cacheDir, ref, path);
  }
  const client = opts.client;
  let meta: FileMetadata;
  try {
    meta = await client.fileMetadata(ref.repoId, ref.revision, path);
  } catch (err) {
    if (err instanceof EntryNotFoundError && err.commit && COMMIT.test(err.commit)) {
      const marker = inside(join(root, '.no_exist', err.commit), path);
      await mkdir(dirname(marker), { recursive: true }).catch(() => undefined);
      await writeFile(marker, '').catch(() => undefined);
      // As huggingface_hub does, so the marker is found offline through refs/<revision>.
      await writeRef(opts.cacheDir, ref, err.commit).catch(() => undefined);
    }
    throw err;
  }
  if (!COMMIT.test(meta.commit)) throw new HubError(`the Hub sent an invalid commit '${meta.commit}' for ${ref.repoId}`);
  if (!/^[0-9A-Za-z_.+=-]+$/.test(meta.etag)) throw new HubError(`the Hub sent an unusable ETag for ${path}`);
  const pointer = inside(join(root, 'snapshots', meta.commit), path);
  await writeRef(opts.cacheDir, ref, meta.commit);
  if (await exists(pointer)) return pointer;
  try {
    await mkdir(join(root, 'blobs'), { recursive: true });
    if (!(await exists(join(opts.cacheDir, 'CACHEDIR.TAG')))) await writeFile(join(opts.cacheDir, 'CACHEDIR.TAG'), CACHEDIR_TAG);
  } catch (err) {
    throw ioErrorFrom(err, root, 'create directory');
  }
  const blob = join(root, 'blobs', meta.etag);
  const lock = join(opts.cacheDir, '.locks', repoFolderName(ref.repoId), `${meta.etag}.tfhf.lock`);
  await withLock(lock, opts.lockTimeoutMs ?? 10 * 60_000, async () => {
    if (await exists(blob)) return;
    const tmp = `${blob}.incomplete`;
    opts.progress?.fileStart(path, meta.size);
    const already = await sizeOf(tmp);
    if (already > 0) opts.progress?.fileAdvance(path, already);
    try {
      await fetchInto(client, ref, meta.location, tmp, path, meta, opts.progress);
      await verify(tmp, path, meta);
      await rename(tmp, blob);
    } finally {
      opts.progress?.fileDone(path);
    }
    opts.onDownloaded?.(path);
  });
  await linkIntoSnapshot(blob, pointer, symlinksDisabled(opts));
  return pointer;
}

// ---------------------------------------------------------------------------------------------------------
// Snapshots: which files, then each file with revision = the resolved commit.

/** fnmatch-style glob as huggingface_hub applies it: case-sensitive, `*` crosses `/`, `dir/` ≡ `dir/*`. */
export function globToRegExp(glob: string): RegExp {
  const g = glob.replace(/\\/g, '/').endsWith('/') ? `${glob}*` : glob;
  let re = '';
  for (let i = 0; i < g.length; i++) {
    const c = g[i] as string;
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const end = g.indexOf(']', i + 2);
      if (end < 0) re += '\\[';
      else {
        let body = g.slice(i + 1, end);
        if (body.startsWith('!')) body = `^${body.slice(1)}`;
        re += `[${body.replace(/\\/g, '\\\\')}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, 's');
}

export function filterFiles(files: readonly string[], include?: readonly string[], exclude?: readonly string[]): string[] {
  const allow = include?.length ? include.map(globToRegExp) : undefined;
  const deny = (exclude ?? []).map(globToRegExp);
  return files.filter((f) => (!allow || allow.some((r) => r.test(f))) && !deny.some((r) => r.test(f)));
}

/** Files tfhf reads besides weights: configs and every tokenizer format it (or transformers) loads. */
export const RUNTIME_FILES = [
  'config.json',
  'generation_config.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'added_tokens.json',
  'tokenizer.json',
  'spiece.model',
  'sentencepiece.bpe.model',
  'vocab.json',
  'vocab.txt',
  'merges.txt',
];

/** transformers' weight preference: safetensors, its index, pytorch_model.bin, its index (§6.2). */
export const WEIGHT_CANDIDATES = [
  'model.safetensors',
  'model.safetensors.index.json',
  'pytorch_model.bin',
  'pytorch_model.bin.index.json',
];

export interface SnapshotRequest {
  repoId: string;
  revision: string;
  /** Explicit files (FILES...). */
  files?: string[];
  include?: string[];
  exclude?: string[];
  /** Every file of the repo. */
  all?: boolean;
}

export interface SnapshotResult {
  snapshot: string;
  commit: string;
  files: string[];
  /** Files whose bytes were transferred in this run. */
  downloaded: string[];
}

async function pool<T>(items: readonly T[], workers: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const run = async (): Promise<void> => {
    while (next < items.length && failed === undefined) {
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(workers, items.length)) }, run));
  if (failed !== undefined) throw failed;
}

function shardNames(indexText: string, indexName: string): string[] {
  let map: unknown;
  try {
    map = (JSON.parse(indexText) as { weight_map?: unknown }).weight_map;
  } catch {
    throw new FormatError(`${indexName} from the Hub is not valid JSON`);
  }
  if (typeof map !== 'object' || map === null) throw new FormatError(`${indexName} has no weight_map`);
  const dir = indexName.includes('/') ? indexName.slice(0, indexName.lastIndexOf('/') + 1) : '';
  const out = new Set<string>();
  for (const f of Object.values(map as Record<string, unknown>)) {
    if (typeof f !== 'string') throw new FormatError(`${indexName} maps a tensor to a non-string file`);
    out.add(checkRepoPath(`${dir}${f}`));
  }
  return [...out];
}

/**
 * A repo revision into the cache (HH `snapshot_download`): the file list at the resolved commit, filtered, then
 * each file fetched by commit. Without files/patterns/all: what tfhf needs to run the model.
 */
export async function downloadSnapshot(opts: HubDownloadOptions, req: SnapshotRequest): Promise<SnapshotResult> {
  const ref: RepoRef = { repoId: req.repoId, revision: req.revision };
  const root = repoDir(opts.cacheDir, req.repoId);
  for (const f of req.files ?? []) checkRepoPath(f);
  if (opts.offline || !opts.client) return offlineSnapshot(opts, req);
  const info = await opts.client.repoInfo(req.repoId, req.revision);
  for (const s of info.siblings) checkRepoPath(s);
  const commit = info.sha;
  const snapshot = join(root, 'snapshots', commit);
  await writeRef(opts.cacheDir, ref, commit);
  const atCommit: RepoRef = { repoId: req.repoId, revision: commit };
  const downloaded: string[] = [];
  const fileOpts: HubDownloadOptions = {
    ...opts,
    onDownloaded: (p) => {
      downloaded.push(p);
      opts.onDownloaded?.(p);
    },
  };
  const get = (files: readonly string[]): Promise<void> =>
    pool(files, opts.maxWorkers ?? 8, async (f) => {
      await downloadFile(fileOpts, atCommit, f);
    });
  const present = new Set(info.siblings);
  let files: string[];
  if (req.files?.length || req.include?.length || req.all) {
    files = req.all && !req.include?.length ? [...info.siblings] : [];
    if (req.include?.length) files.push(...filterFiles(info.siblings, req.include));
    files = filterFiles([...new Set(files)], undefined, req.exclude);
    for (const f of req.files ?? []) {
      if (!present.has(f)) throw new NotFoundError(`file ${f} not found in ${req.repoId} at revision ${req.revision}`);
      if (!files.includes(f)) files.push(f);
    }
    await get(files);
  } else {
    files = filterFiles(RUNTIME_FILES.filter((f) => present.has(f)), undefined, req.exclude);
    const weights = WEIGHT_CANDIDATES.find((w) => present.has(w));
    if (weights?.endsWith('.index.json')) {
      files.push(weights);
      await get(files);
      const indexText = await readFile(join(snapshot, weights), 'utf8');
      const shards = shardNames(indexText, weights);
      for (const s of shards) {
        if (!present.has(s)) throw new NotFoundError(`${weights} of ${req.repoId} names ${s}, which the repo does not have`);
      }
      await get(shards);
      files.push(...shards);
    } else {
      if (weights) files.push(weights);
      await get(files);
    }
  }
  try {
    await mkdir(snapshot, { recursive: true });
  } catch (err) {
    throw ioErrorFrom(err, snapshot, 'create directory');
  }
  return { snapshot, commit, files, downloaded };
}

async function offlineSnapshot(opts: HubDownloadOptions, req: SnapshotRequest): Promise<SnapshotResult> {
  const ref: RepoRef = { repoId: req.repoId, revision: req.revision };
  const commit = await cachedCommit(opts.cacheDir, ref);
  const snapshot = commit ? join(repoDir(opts.cacheDir, req.repoId), 'snapshots', commit) : undefined;
  if (!commit || !snapshot || !(await exists(snapshot))) throw offlineMissing(opts.cacheDir, ref, undefined);
  for (const f of req.files ?? []) {
    if (!(await exists(inside(snapshot, f)))) throw offlineMissing(opts.cacheDir, ref, f);
  }
  return { snapshot, commit, files: req.files ?? [], downloaded: [] };
}

/** Copies a snapshot's files to `--local-dir`, with the .cache/huggingface/download/*.metadata records (§5.6). */
export async function copyToLocalDir(snapshot: string, files: readonly string[], localDir: string, commit: string): Promise<void> {
  const meta = join(localDir, '.cache', 'huggingface');
  try {
    await mkdir(join(meta, 'download'), { recursive: true });
    await writeFile(join(meta, '.gitignore'), '*');
    for (const f of files) {
      const src = inside(snapshot, f);
      const dest = inside(localDir, f);
      await mkdir(dirname(dest), { recursive: true });
      const tmp = `${dest}.tfhf-${process.pid}.incomplete`;
      await copyFile(src, tmp);
      await rename(tmp, dest);
      const etag = (await lstat(src)).isSymbolicLink() ? await blobName(src) : '';
      const record = inside(join(meta, 'download'), `${f}.metadata`);
      await mkdir(dirname(record), { recursive: true });
      await writeFile(record, `${commit}\n${etag}\n${Date.now() / 1000}\n`);
    }
  } catch (err) {
    if (err instanceof FormatError) throw err;
    throw ioErrorFrom(err, localDir, 'write to');
  }
}

async function blobName(link: string): Promise<string> {
  const target = await readlink(link);
  return target.split('/').pop() ?? '';
}
