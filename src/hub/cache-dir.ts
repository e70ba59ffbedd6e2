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
