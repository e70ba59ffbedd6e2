/** Builds the download options every Hub-using command shares from flags and the environment. */
import { hubCacheDir } from './cache-dir.js';
import { findToken, HubClient, isOfflineEnv } from './client.js';
import type { DownloadProgress, HubDownloadOptions } from './download.js';

export interface HubSessionFlags {
  cacheDir?: string | undefined;
  token?: string | undefined;
  offline?: boolean | undefined;
  maxWorkers?: number | undefined;
  progress?: DownloadProgress | undefined;
  env?: NodeJS.ProcessEnv;
}

/** Offline (flag or HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE) → no client at all, so no request can be made. */
export function hubSession(flags: HubSessionFlags = {}): HubDownloadOptions {
  const env = flags.env ?? process.env;
  const offline = flags.offline === true || isOfflineEnv(env);
  const retryBase = Number(env.TFHF_HUB_RETRY_BASE_MS);
  const stall = Number(env.TFHF_HUB_STALL_TIMEOUT_MS);
  return {
    cacheDir: flags.cacheDir ?? hubCacheDir(env),
    offline,
    client: offline
      ? undefined
      : new HubClient({
          env,
          token: findToken(flags.token, env),
          ...(Number.isFinite(retryBase) && retryBase >= 0 && env.TFHF_HUB_RETRY_BASE_MS ? { retryBaseMs: retryBase } : {}),
          ...(Number.isFinite(stall) && stall > 0 ? { stallTimeoutMs: stall } : {}),
        }),
    maxWorkers: flags.maxWorkers ?? 8,
    progress: flags.progress,
  };
}
