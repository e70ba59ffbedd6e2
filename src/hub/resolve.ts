/**
 * `-m MODEL`: a local directory wins; otherwise a Hub id is looked up in the shared Hugging Face cache and,
 * when that revision is not cached, downloaded on first use (what tfhf needs to run it), unless offline.
 */
import { stat } from 'node:fs/promises';
import { NotFoundError } from '../errors.js';
import { createLog, type Log } from '../log.js';
import { cachedSnapshot } from './cache.js';
import { hubCacheDir, isOfflineEnv } from './cache-dir.js';
import { parseModelSpec } from './repo-id.js';

export interface ResolveOptions {
  cacheDir?: string | undefined;
  /** Never touch the network (also HF_HUB_OFFLINE=1). */
  offline?: boolean | undefined;
  /** false: only the cache, as before first-use downloads existed. */
  download?: boolean | undefined;
  token?: string | undefined;
  log?: Log | undefined;
  env?: NodeJS.ProcessEnv;
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** Commands call resolveModelDir(spec) without a log: progress then follows the global -q / --quiet flag. */
function defaultLog(): Log {
  const quiet = process.argv.includes('-q') || process.argv.includes('--quiet');
  return createLog({ verbose: false, quiet, color: false });
}

export async function resolveModelDir(spec: string, options: ResolveOptions = {}): Promise<string> {
  if (await isDirectory(spec)) return spec;
  const ref = parseModelSpec(spec);
  if (!ref) throw new NotFoundError(`model ${spec} is neither a local directory nor a Hub repo id`);
  const env = options.env ?? process.env;
  const cacheDir = options.cacheDir ?? hubCacheDir(env);
  const snapshot = await cachedSnapshot(cacheDir, ref);
  if (snapshot) return snapshot;
  const offline = options.offline === true || isOfflineEnv(env);
  if (offline || options.download === false) {
    throw new NotFoundError(
      `model ${spec} is not a local directory and ${ref.repoId} revision ${ref.revision} is not in the Hugging Face cache at ${cacheDir}${offline ? ' (offline mode)' : ''}`,
      { hint: offline ? `unset HF_HUB_OFFLINE to download it, or run tfhf download ${ref.repoId} while online` : `run tfhf download ${ref.repoId}` },
    );
  }
  const log = options.log ?? defaultLog();
  const { downloadSnapshot } = await import('./download.js');
  const { NetworkError } = await import('./client.js');
  const { downloadBars } = await import('./progress.js');
  const { hubSession } = await import('./session.js');
  log.info(`tfhf: downloading ${ref.repoId}@${ref.revision} into ${cacheDir}`);
  const bars = downloadBars(log);
  try {
    const result = await downloadSnapshot(hubSession({ cacheDir, token: options.token, progress: bars, env }), ref);
    return result.snapshot;
  } catch (err) {
    // Not cached and not obtainable: say where we looked as well as why the Hub did not help.
    if (err instanceof NotFoundError) {
      throw new NotFoundError(`${err.message} (model ${spec} is not a local directory nor in the Hugging Face cache at ${cacheDir})`, {
        hint: err.hint,
        cause: err,
      });
    }
    if (err instanceof NetworkError) {
      throw new NotFoundError(`model ${spec} is not in the Hugging Face cache at ${cacheDir} and ${err.message}`, {
        hint: 'check your network connection (HTTPS_PROXY is honoured), or pass a local directory',
        cause: err,
      });
    }
    throw err;
  } finally {
    bars.stop();
  }
}
