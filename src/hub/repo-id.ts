/** Hub repo ids and model specs (`org/name[@revision]`), validated as huggingface_hub validates them. */
import { UsageError } from '../errors.js';

export interface RepoRef {
  readonly repoId: string;
  readonly revision: string;
}

export const DEFAULT_REVISION = 'main';

const NAME = /^[A-Za-z0-9_.-]{1,96}$/;

export function isValidRepoId(repoId: string): boolean {
  const parts = repoId.split('/');
  if (parts.length > 2) return false;
  for (const p of parts) {
    if (!NAME.test(p) || /^[-.]|[-.]$/.test(p)) return false;
  }
  return !repoId.includes('--') && !repoId.includes('..') && !repoId.endsWith('.git');
}

/** Parses `org/name` or `org/name@revision`; returns undefined when the spec is not a repo id. */
export function parseModelSpec(spec: string): RepoRef | undefined {
  const at = spec.indexOf('@');
  const repoId = at < 0 ? spec : spec.slice(0, at);
  const revision = at < 0 ? DEFAULT_REVISION : spec.slice(at + 1);
  if (!isValidRepoId(repoId)) return undefined;
  if (revision === '') throw new UsageError(`empty revision in '${spec}'`, { hint: 'write org/name@revision' });
  return { repoId, revision };
}

/** `models--org--name`, the cache folder of a model repo. */
export function repoFolderName(repoId: string): string {
  return `models--${repoId.split('/').join('--')}`;
}
