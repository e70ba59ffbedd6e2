/** Reading the huggingface_hub cache (layout in ../shared/docs/hub-protocol.md §5), without network. */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { repoFolderName, type RepoRef } from './repo-id.js';

const COMMIT = /^[0-9a-f]{40}$/;

/** The commit a revision points to in the cache, or undefined when the cache does not know it. */
export async function cachedCommit(cacheDir: string, ref: RepoRef): Promise<string | undefined> {
  if (COMMIT.test(ref.revision)) return ref.revision;
  try {
    // huggingface_hub writes exactly 40 characters; it reads the whole file as the commit.
    const commit = await readFile(join(cacheDir, repoFolderName(ref.repoId), 'refs', ref.revision), 'utf8');
    return COMMIT.test(commit) ? commit : undefined;
  } catch {
    return undefined;
  }
}

/** snapshots/<commit> of a cached repo revision, if that folder exists. */
export async function cachedSnapshot(cacheDir: string, ref: RepoRef): Promise<string | undefined> {
  const commit = await cachedCommit(cacheDir, ref);
  if (!commit) return undefined;
  const dir = join(cacheDir, repoFolderName(ref.repoId), 'snapshots', commit);
  try {
    return (await stat(dir)).isDirectory() ? dir : undefined;
  } catch {
    return undefined;
  }
}
