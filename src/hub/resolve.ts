/** `-m MODEL`: a local directory wins; otherwise a Hub id is looked up in the shared Hugging Face cache. */
import { stat } from 'node:fs/promises';
import { NotFoundError } from '../errors.js';
import { cachedSnapshot } from './cache.js';
import { hubCacheDir } from './cache-dir.js';
import { parseModelSpec } from './repo-id.js';

export interface ResolveOptions {
  cacheDir?: string | undefined;
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

export async function resolveModelDir(spec: string, options: ResolveOptions = {}): Promise<string> {
  if (await isDirectory(spec)) return spec;
  const ref = parseModelSpec(spec);
  if (!ref) throw new NotFoundError(`model ${spec} is neither a local directory nor a Hub repo id`);
  const cacheDir = options.cacheDir ?? hubCacheDir();
  const snapshot = await cachedSnapshot(cacheDir, ref);
  if (snapshot) return snapshot;
  throw new NotFoundError(`model ${spec} is not a local directory and revision ${ref.revision} is not in the Hugging Face cache at ${cacheDir}`, {
    hint: `fetch it first (e.g. huggingface-cli download ${ref.repoId}) or pass a local directory`,
  });
}
