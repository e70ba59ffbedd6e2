/** Where huggingface_hub keeps its cache, resolved from the same environment variables, in the same order. */
import { homedir } from 'node:os';
import { join } from 'node:path';

export function hfHome(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HOME) return env.HF_HOME;
  const xdg = env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(xdg, 'huggingface');
}

export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  // HUGGINGFACE_HUB_CACHE is the deprecated name huggingface_hub still honours.
  return env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE || join(hfHome(env), 'hub');
}

const TRUE = new Set(['1', 'ON', 'YES', 'TRUE']);

/** HF_HUB_OFFLINE (or legacy TRANSFORMERS_OFFLINE) set to 1/ON/YES/TRUE, case-insensitive, as huggingface_hub reads it. */
export function isOfflineEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  return TRUE.has((env.HF_HUB_OFFLINE ?? '').toUpperCase()) || TRUE.has((env.TRANSFORMERS_OFFLINE ?? '').toUpperCase());
}
