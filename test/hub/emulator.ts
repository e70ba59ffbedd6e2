/**
 * A Hugging Face Hub emulator for tests (protocol in ../shared/docs/hub-protocol.md): a "hub" server with
 * /api/models/{repo}/revision/{rev} and HEAD/GET /{repo}/resolve/{rev}/{path}, and a second "CDN" server on
 * another port to which LFS files are redirected (302 with X-Linked-Etag / X-Linked-Size). Regular files of
 * public repos get the Hub's 307 to a relative /api/resolve-cache/... URL. Faults can be injected and every
 * request is logged (with its headers) so tests can assert what went over the wire.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface EmulatorRepo {
  readonly id: string;
  readonly commit: string;
  readonly files: Map<string, Buffer>;
  /** Names listed in the API siblings in addition to the real files (e.g. hostile names). */
  extraSiblings?: string[];
  /** Gated: files need a token from `allowedTokens` (the API answers anonymously, as the real Hub does). */
  gated?: boolean;
  allowedTokens?: Set<string>;
  /** Other revision names (branches/tags) → this commit. `main` always resolves. */
  revisions?: Set<string>;
}

export interface LoggedRequest {
  readonly server: 'hub' | 'cdn';
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
}

export type Fault =
  /** Send `afterBytes` bytes of the body of `path` and then destroy the connection. */
  | { kind: 'drop'; path: string; afterBytes: number; times: number }
  /** Answer requests (any path, or `path`) with this status. */
  | { kind: 'status'; status: number; path?: string; times: number; retryAfter?: number }
  /** Send `afterBytes` bytes of the body and then stop sending (without closing) for `ms`. */
  | { kind: 'stall'; path: string; afterBytes: number; ms: number; times: number }
  /** Flip one byte of the body (a wrong sha256). */
  | { kind: 'corrupt'; path: string; times: number };

export interface HubEmulator {
  readonly endpoint: string;
  readonly cdnOrigin: string;
  readonly repos: Map<string, EmulatorRepo>;
  readonly requests: LoggedRequest[];
  readonly faults: Fault[];
  /** Body bytes actually sent per repo file path (hub + CDN). */
  readonly bytesSent: Map<string, number>;
  addRepo(repo: EmulatorRepo): void;
  reset(): void;
  close(): Promise<void>;
}

export function isLfsPath(path: string): boolean {
  return /\.(safetensors|bin)$/.test(path) || path.endsWith('spiece.model');
}

export function gitBlobSha1(data: Buffer): string {
  return createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The stable fake commit of a repo id (40 hex). */
export function fakeCommit(repoId: string): string {
  return createHash('sha1').update(`commit:${repoId}`).digest('hex');
}

/** Loads a directory (flat or nested) as a repo. */
export function repoFromDir(id: string, dir: string, extra: Partial<EmulatorRepo> = {}): EmulatorRepo {
  const files = new Map<string, Buffer>();
  const walk = (sub: string): void => {
    for (const e of readdirSync(join(dir, sub), { withFileTypes: true })) {
      const rel = sub ? `${sub}/${e.name}` : e.name;
      if (e.isDirectory()) walk(rel);
      else files.set(rel, readFileSync(join(dir, rel)));
    }
  };
  walk('');
  return { id, commit: fakeCommit(id), files, ...extra };
}

export function etagOf(path: string, data: Buffer): string {
  return isLfsPath(path) ? sha256(data) : gitBlobSha1(data);
}

function errorReply(res: ServerResponse, status: number, code: string | undefined, message: string, commit?: string): void {
  const headers: Record<string, string> = { 'content-type': 'application/json', 'x-error-message': message };
  if (code) headers['x-error-code'] = code;
  if (commit) headers['x-repo-commit'] = commit;
  const body = JSON.stringify({ error: message });
  headers['content-length'] = String(Buffer.byteLength(body));
  res.writeHead(status, headers);
  res.end(body);
}

function parseRange(header: string | undefined, size: number): [number, number] | 'bad' | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return 'bad';
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || start > end) return 'bad';
  return [start, end];
}

export async function startHubEmulator(initial: EmulatorRepo[] = []): Promise<HubEmulator> {
  const repos = new Map<string, EmulatorRepo>();
  const requests: LoggedRequest[] = [];
  const faults: Fault[] = [];
  const bytesSent = new Map<string, number>();
  for (const r of initial) repos.set(r.id, r);
  let endpoint = '';
  let cdnOrigin = '';

  const takeFault = (predicate: (f: Fault) => boolean): Fault | undefined => {
    const i = faults.findIndex(predicate);
    if (i < 0) return undefined;
    const f = faults[i] as Fault;
    f.times -= 1;
    if (f.times <= 0) faults.splice(i, 1);
    return f;
  };

  /** Sends (part of) a file body, applying drop/stall/corrupt faults for this path. */
  const sendBody = (req: IncomingMessage, res: ServerResponse, path: string, data: Buffer, headers: Record<string, string>): void => {
    const range = parseRange(req.headers.range, data.length);
    if (range === 'bad') {
      res.writeHead(416, { 'content-range': `bytes */${data.length}` });
      res.end();
      return;
    }
    const [start, end] = range ?? [0, data.length - 1];
    const status = range ? 206 : 200;
    const out: Record<string, string> = { ...headers, 'accept-ranges': 'bytes', 'content-length': String(end - start + 1) };
    if (range) out['content-range'] = `bytes ${start}-${end}/${data.length}`;
    res.writeHead(status, out);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    let body = Buffer.from(data.subarray(start, end + 1));
    if (takeFault((f) => f.kind === 'corrupt' && f.path === path) && body.length > 0) {
      body[body.length >> 1] = (body[body.length >> 1] as number) ^ 0xff;
    }
    const count = (n: number): void => {
      bytesSent.set(path, (bytesSent.get(path) ?? 0) + n);
    };
    const drop = takeFault((f) => f.kind === 'drop' && f.path === path);
    if (drop && drop.kind === 'drop') {
      const part = body.subarray(0, Math.min(drop.afterBytes, body.length - 1));
      count(part.length);
      res.write(part, () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    const stall = takeFault((f) => f.kind === 'stall' && f.path === path);
    if (stall && stall.kind === 'stall') {
      const part = body.subarray(0, Math.min(stall.afterBytes, body.length - 1));
      count(part.length);
      res.write(part);
      const timer = setTimeout(() => {
        if (res.destroyed) return;
        count(body.length - part.length);
        res.end(body.subarray(part.length));
      }, stall.ms);
      res.on('close', () => clearTimeout(timer));
      return;
    }
    count(body.length);
    res.end(body);
  };

  const findRepoFile = (sha: string): { repo: EmulatorRepo; path: string; data: Buffer } | undefined => {
    for (const repo of repos.values()) {
      for (const [path, data] of repo.files) {
        if (isLfsPath(path) && sha256(data) === sha) return { repo, path, data };
      }
    }
    return undefined;
  };

  const statusFault = (res: ServerResponse, path: string | undefined): boolean => {
    const f = takeFault((x) => x.kind === 'status' && (x.path === undefined || x.path === path));
    if (!f || f.kind !== 'status') return false;
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (f.retryAfter !== undefined) headers['retry-after'] = String(f.retryAfter);
    res.writeHead(f.status, headers);
    res.end(JSON.stringify({ error: `injected ${f.status}` }));
    return true;
  };

  /** Splits `/a/b/<marker>/<rev>/<path...>` (raw, still percent-encoded). */
  const splitAt = (segments: string[], marker: string): { repoId: string; rev: string; path: string } | undefined => {
    const i = segments.indexOf(marker);
    if (i < 1 || i + 1 >= segments.length) return undefined;
    return {
      repoId: segments.slice(0, i).map(decodeURIComponent).join('/'),
      rev: decodeURIComponent(segments[i + 1] as string),
      path: segments.slice(i + 2).map(decodeURIComponent).join('/'),
    };
  };

  const resolveRev = (repo: EmulatorRepo, rev: string): string | undefined => {
    if (rev === 'main' || rev === repo.commit || repo.revisions?.has(rev)) return repo.commit;
    return undefined;
  };

  const bearer = (req: IncomingMessage): string | undefined => {
    const h = req.headers.authorization;
    return h?.startsWith('Bearer ') ? h.slice(7) : undefined;
  };

  /** Serves a file of `repo` at `commit` (resolve or resolve-cache), or redirects LFS files to the CDN. */
  const serveFile = (req: IncomingMessage, res: ServerResponse, repo: EmulatorRepo, commit: string, rev: string, path: string, viaCache: boolean): void => {
    const data = repo.files.get(path);
    if (!data) {
      errorReply(res, 404, 'EntryNotFound', `${path} does not exist on "${rev}"`, commit);
      return;
    }
    if (isLfsPath(path)) {
      const sha = sha256(data);
      res.writeHead(302, {
        location: `${cdnOrigin}/repos/${sha}?X-Amz-Signature=fake&path=${encodeURIComponent(path)}`,
        'x-repo-commit': commit,
        'x-linked-etag': `"${sha}"`,
        'x-linked-size': String(data.length),
        etag: '"redirect-etag"',
        'content-length': '0',
      });
      res.end();
      return;
    }
    const publicNamespaced = !repo.gated && repo.id.includes('/');
    if (publicNamespaced && !viaCache && data.length > 0) {
      const etag = gitBlobSha1(data);
      const loc = `/api/resolve-cache/models/${repo.id}/${commit}/${path.split('/').map(encodeURIComponent).join('/')}?${encodeURIComponent(`/${repo.id}/resolve/${rev}/${path}`)}=&etag=%22${etag}%22`;
      res.writeHead(307, { location: loc, 'x-repo-commit': commit, 'content-length': '0' });
      res.end();
      return;
    }
    sendBody(req, res, path, data, { 'x-repo-commit': commit, etag: `"${gitBlobSha1(data)}"`, 'content-type': 'application/octet-stream' });
  };

  const hub = createServer((req, res) => {
    requests.push({ server: 'hub', method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const url = new URL(req.url ?? '/', 'http://x');
    const segments = url.pathname.split('/').filter((s) => s !== '');
    if (statusFault(res, undefined)) return;
    // Invalid token: the Hub answers 401 with this message whatever the resource.
    const token = bearer(req);
    if (token !== undefined && token.startsWith('hf_invalid')) {
      errorReply(res, 401, undefined, 'Invalid credentials in Authorization header');
      return;
    }
    if (segments[0] === 'api' && segments[1] === 'models') {
      const parts = splitAt(segments.slice(2), 'revision');
      const repoId = parts ? parts.repoId : segments.slice(2).map(decodeURIComponent).join('/');
      const repo = repos.get(repoId);
      if (!repo) return errorReply(res, 404, 'RepoNotFound', `Repository not found`);
      const commit = resolveRev(repo, parts ? parts.rev : 'main');
      if (!commit) return errorReply(res, 404, 'RevisionNotFound', `Invalid rev id: ${parts?.rev ?? ''}`);
      const body = JSON.stringify({
        id: repo.id,
        modelId: repo.id,
        sha: commit,
        private: false,
        gated: repo.gated ? 'manual' : false,
        disabled: false,
        siblings: [...repo.files.keys(), ...(repo.extraSiblings ?? [])].map((rfilename) => ({ rfilename })),
      });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
      res.end(body);
      return;
    }
    if (segments[0] === 'api' && segments[1] === 'resolve-cache' && segments[2] === 'models') {
      // /api/resolve-cache/models/{org}/{name}/{commit}/{path}
      const rest = segments.slice(3);
      for (let n = 1; n <= 2 && n < rest.length; n++) {
        const repo = repos.get(rest.slice(0, n).map(decodeURIComponent).join('/'));
        if (repo && rest[n] === repo.commit) {
          const path = rest.slice(n + 1).map(decodeURIComponent).join('/');
          if (statusFault(res, path)) return;
          serveFile(req, res, repo, repo.commit, repo.commit, path, true);
          return;
        }
      }
      return errorReply(res, 404, 'EntryNotFound', 'not in resolve cache');
    }
    const parts = splitAt(segments, 'resolve');
    if (!parts) return errorReply(res, 404, undefined, 'Not Found');
    const repo = repos.get(parts.repoId);
    if (!repo) return errorReply(res, 404, 'RepoNotFound', 'Repository not found');
    if (repo.gated && !(token !== undefined && repo.allowedTokens?.has(token))) {
      if (token === undefined) {
        return errorReply(res, 401, 'GatedRepo', `Access to model ${repo.id} is restricted. You must have access to it and be authenticated to access it. Please log in.`);
      }
      return errorReply(res, 403, 'GatedRepo', `Access to model ${repo.id} is restricted and you are not in the authorized list. Visit ${endpoint}/${repo.id} to ask for access.`);
    }
    const commit = resolveRev(repo, parts.rev);
    if (!commit) return errorReply(res, 404, 'RevisionNotFound', `Invalid rev id: ${parts.rev}`);
    if (statusFault(res, parts.path)) return;
    serveFile(req, res, repo, commit, parts.rev, parts.path, false);
  });

  const cdn = createServer((req, res) => {
    requests.push({ server: 'cdn', method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const url = new URL(req.url ?? '/', 'http://x');
    const m = /^\/repos\/([0-9a-f]{64})$/.exec(url.pathname);
    const found = m ? findRepoFile(m[1] as string) : undefined;
    if (!found) {
      res.writeHead(404);
      res.end();
      return;
    }
    if (statusFault(res, found.path)) return;
    sendBody(req, res, found.path, found.data, { etag: `"${sha256(found.data)}"`, 'content-type': 'application/octet-stream' });
  });

  const listen = (s: Server): Promise<number> =>
    new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve((s.address() as AddressInfo).port)));
  endpoint = `http://127.0.0.1:${await listen(hub)}`;
  cdnOrigin = `http://127.0.0.1:${await listen(cdn)}`;

  const closeServer = (s: Server): Promise<void> =>
    new Promise((resolve) => {
      s.closeAllConnections();
      s.close(() => resolve());
    });

  return {
    endpoint,
    cdnOrigin,
    repos,
    requests,
    faults,
    bytesSent,
    addRepo: (r) => void repos.set(r.id, r),
    reset: () => {
      requests.length = 0;
      faults.length = 0;
      bytesSent.clear();
    },
    close: async () => {
      await Promise.all([closeServer(hub), closeServer(cdn)]);
    },
  };
}
