import { arch, cpus, platform, totalmem } from 'node:os';
import { initBackend, tf, type BackendChoice, type BackendNotices } from '../backend/index.js';
import { hubCacheDir } from '../hub/cache-dir.js';

export interface EnvReport {
  tfhf: string;
  node: string;
  platform: string;
  cpus: number;
  memoryGiB: number;
  tfjsCore: string;
  backend: string;
  backendThreads: number;
  nativeBackend: string;
  hubCache: string;
  hfEndpoint: string;
  offline: boolean;
}

/** What `transformers-cli env` reports, for our stack: enough to paste into a bug report. */
export async function collectEnv(version: string, backend: BackendChoice, notices: BackendNotices): Promise<EnvReport> {
  const info = await initBackend(backend, notices);
  return {
    tfhf: version,
    node: process.version,
    platform: `${platform()}-${arch()}`,
    cpus: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    tfjsCore: tf.version_core,
    backend: info.name,
    backendThreads: info.threads,
    nativeBackend: info.name === 'tensorflow' ? 'loaded' : (info.fallbackReason ?? 'not requested'),
    hubCache: hubCacheDir(),
    hfEndpoint: process.env.HF_ENDPOINT || 'https://huggingface.co',
    offline: ['1', 'ON', 'YES', 'TRUE'].includes((process.env.HF_HUB_OFFLINE ?? '').toUpperCase()),
  };
}
