/**
 * HTTP side of the Hub protocol (../shared/docs/hub-protocol.md §2–4), on undici: endpoint and token
 * lookup, the metadata HEAD with relative-redirect following, repo info, error mapping from X-Error-Code,
 * retries with backoff. The token goes only to the endpoint's origin, never to a CDN redirect target.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, EnvHttpProxyAgent, request, type Dispatcher } from 'undici';
import { HubError, NotFoundError, TfhfError } from '../errors.js';
import { hfHome } from './cache-dir.js';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

export function hubEndpoint(env: NodeJS.ProcessEnv = process.env): string {
  return (env.HF_ENDPOINT || DEFAULT_ENDPOINT).replace(/\/+$/, '');
}

export { isOfflineEnv } from './cache-dir.js';

function cleanToken(value: string | undefined): string | undefined {
  const t = value?.replace(/[\r\n]/g, '').trim();
  return t ? t : undefined;
}

/** --token, then HF_TOKEN, HUGGING_FACE_HUB_TOKEN, then the token file ($HF_TOKEN_PATH or $HF_HOME/token). */
export function findToken(explicit: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const direct = cleanToken(explicit) ?? cleanToken(env.HF_TOKEN) ?? cleanToken(env.HUGGING_FACE_HUB_TOKEN);
  if (direct) return direct;
  try {
    return cleanToken(readFileSync(env.HF_TOKEN_PATH || join(hfHome(env), 'token'), 'utf8'));
  } catch {
    return undefined;
  }
}

/** `refs/pr/1` → `refs%2Fpr%2F1` (no safe characters), as huggingface_hub encodes revisions. */
export function encodeRevision(revision: string): string {
  return encodeURIComponent(revision);
}

export function encodeRepoPath(path: string): string {
  return path.split('/').map(encodeURIComponent).join('/');
}

export interface HubClientOptions {
  endpoint?: string;
  token?: string | undefined;
  /** Upper bound of retries for 408/429/5xx and connection errors. */
  maxRetries?: number;
  /** First backoff wait (doubles up to 8x). */
  retryBaseMs?: number;
  /** No data for this long (headers or body) → the attempt fails (and is retried / resumed). */
  stallTimeoutMs?: number;
  dispatcher?: Dispatcher;
  env?: NodeJS.ProcessEnv;
}

export interface FileMetadata {
  commit: string;
  /** Normalised: sha256 for LFS files, git blob sha1 otherwise. */
  etag: string;
  size: number | undefined;
  /** Where to GET the bytes (the CDN for LFS files). */
  location: string;
}

export interface RepoInfo {
  sha: string;
  siblings: string[];
  gated: boolean | string;
}

/** A file absent from a repo revision; `commit` (from X-Repo-Commit) lets the cache record it in .no_exist. */
export class EntryNotFoundError extends NotFoundError {
  constructor(
    message: string,
    readonly commit: string | undefined,
  ) {
    super(message);
  }
}

/** The Hub (or the CDN) could not be reached at all: DNS, refused, reset, timeout. */
export class NetworkError extends HubError {}

const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504]);

export function normalizeEtag(etag: string | undefined): string | undefined {
  if (!etag) return undefined;
  return etag.replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Network failures worth retrying (reset, refused, timeouts, closed sockets). */
export function isRetryableNetworkError(err: unknown): boolean {
  const code = (err as { code?: string } | undefined)?.code ?? '';
  return (
    ['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH'].includes(code) ||
    code.startsWith('UND_ERR_')
  );
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface HubResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: Dispatcher.ResponseData['body'];
}

export class HubClient {
  readonly endpoint: string;
  private readonly origin: string;
  private readonly token: string | undefined;
  readonly maxRetries: number;
  readonly retryBaseMs: number;
  readonly stallTimeoutMs: number;
  private readonly dispatcher: Dispatcher;
  /** Requests sent, for diagnostics. */
  requestCount = 0;

  constructor(options: HubClientOptions = {}) {
    const env = options.env ?? process.env;
    this.endpoint = (options.endpoint ?? hubEndpoint(env)).replace(/\/+$/, '');
    this.origin = new URL(this.endpoint).origin;
    this.token = options.token;
    this.maxRetries = options.maxRetries ?? 5;
    this.retryBaseMs = options.retryBaseMs ?? 1000;
    this.stallTimeoutMs = options.stallTimeoutMs ?? 30_000;
    // HTTPS_PROXY / HTTP_PROXY / NO_PROXY (either case), read from `env`, as curl and requests do.
    const httpProxy = env.HTTP_PROXY || env.http_proxy;
    const httpsProxy = env.HTTPS_PROXY || env.https_proxy;
    const timeouts = { headersTimeout: this.stallTimeoutMs, bodyTimeout: this.stallTimeoutMs, connectTimeout: 10_000 };
    this.dispatcher =
      options.dispatcher ??
      (httpProxy || httpsProxy
        ? new EnvHttpProxyAgent({ ...timeouts, httpProxy, httpsProxy, noProxy: env.NO_PROXY ?? env.no_proxy ?? '' })
        : new Agent(timeouts));
  }

  get hasToken(): boolean {
    return this.token !== undefined;
  }

  /** Authorization only for the endpoint's own origin: never for a CDN / storage redirect target. */
  headersFor(url: string, extra: Record<string, string> = {}): Record<string, string> {
    const h: Record<string, string> = { 'user-agent': 'tfhf; hf_hub/compatible', ...extra };
    if (this.token && new URL(url).origin === this.origin) h.authorization = `Bearer ${this.token}`;
    return h;
  }

  /** One HTTP request, no redirects followed. Network errors are wrapped in HubError with the cause kept. */
  async send(method: 'GET' | 'HEAD', url: string, extra: Record<string, string> = {}): Promise<HubResponse> {
    this.requestCount++;
    try {
      const r = await request(url, { method, headers: this.headersFor(url, extra), dispatcher: this.dispatcher });
      return { statusCode: r.statusCode, headers: r.headers, body: r.body };
    } catch (err) {
      throw new NetworkError(`cannot reach ${new URL(url).host}: ${(err as Error).message}`, {
        hint: 'check your network connection (HTTPS_PROXY is honoured), or use --offline with a cached model',
        cause: err,
      });
    }
  }

  /** send() with bounded retries and exponential backoff on 408/429/5xx and network errors. */
  async sendWithRetry(method: 'GET' | 'HEAD', url: string, extra: Record<string, string> = {}): Promise<HubResponse> {
    for (let attempt = 0; ; attempt++) {
      let wait = Math.min(this.retryBaseMs * 2 ** attempt, this.retryBaseMs * 8);
      try {
        const r = await this.send(method, url, extra);
        if (!RETRY_STATUS.has(r.statusCode) || attempt >= this.maxRetries) return r;
        const retryAfter = Number(header(r.headers, 'retry-after'));
        if (Number.isFinite(retryAfter) && retryAfter >= 0) wait = Math.min(retryAfter * 1000 + this.retryBaseMs, 60_000);
        await r.body.dump();
      } catch (err) {
        if (!(err instanceof NetworkError) || !isRetryableNetworkError(err.cause) || attempt >= this.maxRetries) throw err;
      }
      await sleep(wait);
    }
  }

  /** Maps an error response to a typed error naming the repo / revision / file. */
  async errorFor(r: HubResponse, what: { repoId: string; revision: string; path?: string }): Promise<TfhfError> {
    const code = header(r.headers, 'x-error-code');
    let message = header(r.headers, 'x-error-message');
    try {
      const text = await r.body.text();
      if (!message) message = (JSON.parse(text) as { error?: string }).error;
    } catch {
      // no JSON body
    }
    const repoUrl = `${this.endpoint}/${what.repoId}`;
    if (code === 'RevisionNotFound') {
      return new NotFoundError(`revision '${what.revision}' not found in repo ${what.repoId}`, {
        hint: 'check the branch, tag or commit name (--revision / @revision)',
      });
    }
    if (code === 'EntryNotFound') {
      return new EntryNotFoundError(
        `file ${what.path ?? '?'} not found in ${what.repoId} at revision ${what.revision}`,
        header(r.headers, 'x-repo-commit'),
      );
    }
    if (code === 'GatedRepo') {
      return new HubError(`${what.repoId} is a gated repo: ${message ?? 'access restricted'}`, {
        hint: this.token
          ? `your token has no access yet: accept the terms at ${repoUrl}`
          : `accept the terms at ${repoUrl}, then pass --token or set HF_TOKEN`,
      });
    }
    if (r.statusCode === 401 && message === 'Invalid credentials in Authorization header') {
      return new HubError(`the Hub rejected the token: invalid or expired`, {
        hint: 'create a new token at https://huggingface.co/settings/tokens (from --token, HF_TOKEN or $HF_HOME/token)',
      });
    }
    if (code === 'RepoNotFound' || r.statusCode === 401 || (r.statusCode === 404 && what.path === undefined)) {
      return new NotFoundError(`repository ${what.repoId} not found on ${this.endpoint}`, {
        hint: this.token ? 'check the repo id' : 'check the repo id; for a private repo pass --token or set HF_TOKEN',
      });
    }
    if (r.statusCode === 403) {
      return new HubError(`access to ${what.repoId} forbidden (403): ${message ?? ''}`, { hint: 'check the token permissions' });
    }
    return new HubError(`the Hub answered ${r.statusCode} for ${what.repoId}${what.path ? `/${what.path}` : ''}${message ? `: ${message}` : ''}`);
  }

  /** GET /api/models/{repo}/revision/{rev}: the resolved commit and the file list. */
  async repoInfo(repoId: string, revision: string): Promise<RepoInfo> {
    const url = `${this.endpoint}/api/models/${repoId}/revision/${encodeRevision(revision)}`;
    const r = await this.sendWithRetry('GET', url);
    if (r.statusCode !== 200) throw await this.errorFor(r, { repoId, revision });
    let parsed: { sha?: unknown; siblings?: unknown; gated?: unknown };
    try {
      parsed = (await r.body.json()) as typeof parsed;
    } catch {
      throw new HubError(`${url} did not answer JSON`);
    }
    if (typeof parsed.sha !== 'string' || !/^[0-9a-f]{40}$/.test(parsed.sha) || !Array.isArray(parsed.siblings)) {
      throw new HubError(`${url} answered without a commit sha or file list`);
    }
    const siblings = (parsed.siblings as { rfilename?: unknown }[]).map((s) => String(s.rfilename));
    const gated = typeof parsed.gated === 'string' || typeof parsed.gated === 'boolean' ? parsed.gated : false;
    return { sha: parsed.sha, siblings, gated };
  }

  resolveUrl(repoId: string, revision: string, path: string): string {
    return `${this.endpoint}/${repoId}/resolve/${encodeRevision(revision)}/${encodeRepoPath(path)}`;
  }

  /**
   * HEAD /resolve with huggingface_hub's redirect rule: relative Locations are followed on the same host,
   * an absolute one (the CDN) is not: the 3xx itself carries X-Linked-Etag / X-Linked-Size.
   */
  async fileMetadata(repoId: string, revision: string, path: string): Promise<FileMetadata> {
    const original = this.resolveUrl(repoId, revision, path);
    let url = original;
    let commit: string | undefined;
    for (let hop = 0; ; hop++) {
      const r = await this.sendWithRetry('HEAD', url, { 'accept-encoding': 'identity' });
      if (r.statusCode >= 400) throw await this.errorFor(r, { repoId, revision, path });
      await r.body.dump();
      commit = header(r.headers, 'x-repo-commit') ?? commit;
      const location = header(r.headers, 'location');
      if (r.statusCode >= 300 && r.statusCode < 400 && location && !/^[a-z][a-z0-9+.-]*:/i.test(location) && hop < 10) {
        url = new URL(location, url).toString();
        continue;
      }
      const etag = normalizeEtag(header(r.headers, 'x-linked-etag') ?? header(r.headers, 'etag'));
      const redirect = r.statusCode >= 300 && r.statusCode < 400;
      const sizeText = header(r.headers, 'x-linked-size') ?? (redirect ? undefined : header(r.headers, 'content-length'));
      if (!commit) throw new HubError(`${original} did not send X-Repo-Commit: ${this.endpoint} does not look like a Hugging Face Hub`);
      if (!etag) throw new HubError(`${original}: the Hub sent no ETag`);
      const size = sizeText !== undefined && /^\d+$/.test(sizeText) ? Number(sizeText) : undefined;
      return { commit, etag, size, location: location ? new URL(location, url).toString() : url };
    }
  }
}
