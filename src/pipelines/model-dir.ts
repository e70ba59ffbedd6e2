/**
 * A model directory (Hub layout, cache snapshot or converted) as the pipelines need it: config.json and
 * generation_config.json parsed once, the model family named, the weights opened lazily.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { FormatError, NotFoundError, UnsupportedError } from '../errors.js';
import { resolveModelDir } from '../hub/resolve.js';

export type ModelFamily = 't5' | 'flaubert';

export interface ModelDir {
  /** What the user gave (`-m`). */
  readonly spec: string;
  readonly dir: string;
  readonly family: ModelFamily;
  readonly config: Readonly<Record<string, unknown>>;
  /** generation_config.json, when the directory has one. */
  readonly generationConfig: Readonly<Record<string, unknown>> | undefined;
}

const FAMILIES: Record<string, ModelFamily> = { t5: 't5', flaubert: 'flaubert' };

async function readJson(path: string): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    if (!(await stat(path)).isFile()) return undefined;
    text = await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // reported below
  }
  throw new FormatError(`${path} is not a JSON object`);
}

export async function openModelDir(spec: string, options: { cacheDir?: string | undefined } = {}): Promise<ModelDir> {
  const dir = await resolveModelDir(spec, options);
  const config = await readJson(join(dir, 'config.json'));
  if (!config) throw new NotFoundError(`${spec} has no config.json`, { hint: 'a model directory needs config.json' });
  const type = String(config.model_type ?? '');
  const family = FAMILIES[type];
  if (!family) {
    throw new UnsupportedError(`${spec} is a '${type || 'unknown'}' model, which tfhf does not run`, {
      hint: 'supported: T5, FLAN-T5, FLAN-UL2 (model_type t5) and FlauBERT (model_type flaubert)',
    });
  }
  return { spec, dir, family, config, generationConfig: await readJson(join(dir, 'generation_config.json')) };
}
