/**
 * Crash-safe writes: everything is written under a temporary name beside its destination and renamed
 * into place at the end, so an interrupted or failed run never leaves a half-written file or directory.
 * Temporary paths are registered so that SIGINT/SIGTERM handlers can remove them before exiting.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdir, open, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { IoError, ioErrorFrom } from '../errors.js';
import { pathExists as exists } from './fs.js';

const pending = new Set<string>();

/** Removes every temporary path still registered; safe to call from a signal handler. */
export function removePendingTemporaries(): void {
  for (const path of pending) {
    try {
      rmSync(path, { recursive: true, force: true });
    } catch {
      // Best effort on the way out; the name prefix lets a user spot leftovers.
    }
  }
  pending.clear();
}

export function temporarySibling(path: string): string {
  return join(dirname(path), `.tfhf-tmp-${basename(path)}-${process.pid}-${randomBytes(4).toString('hex')}`);
}


/** Writes a file atomically (temp file + rename). */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = temporarySibling(path);
  pending.add(tmp);
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw ioErrorFrom(err, path, 'write');
  } finally {
    pending.delete(tmp);
  }
}

export interface AtomicDirOptions {
  /** Replace an existing destination (it is removed only after the new one is complete). */
  overwrite: boolean;
}

/**
 * Builds a directory atomically: `fill` writes into a fresh temporary directory beside `dest`, which is
 * renamed to `dest` only when `fill` succeeds. On failure nothing is left behind.
 */
export async function buildDirAtomic<T>(
  dest: string,
  options: AtomicDirOptions,
  fill: (tmpDir: string) => Promise<T>,
): Promise<T> {
  if ((await exists(dest)) && !options.overwrite) {
    throw new IoError(`output directory ${dest} already exists`, {
      hint: 'choose another -o directory or pass --force to replace it',
    });
  }
  try {
    await mkdir(dirname(dest), { recursive: true });
  } catch (err) {
    throw ioErrorFrom(err, dirname(dest), 'create directory');
  }
  const tmp = temporarySibling(dest);
  pending.add(tmp);
  try {
    try {
      await mkdir(tmp);
    } catch (err) {
      throw ioErrorFrom(err, dirname(dest), 'write to');
    }
    const result = await fill(tmp);
    if (await exists(dest)) {
      const old = temporarySibling(dest);
      pending.add(old);
      await rename(dest, old);
      await rename(tmp, dest);
      await rm(old, { recursive: true, force: true });
      pending.delete(old);
    } else {
      await rename(tmp, dest);
    }
    return result;
  } finally {
    await rm(tmp, { recursive: true, force: true });
    pending.delete(tmp);
  }
}

export interface AtomicFile {
  write(text: string): Promise<void>;
  /** Renames the finished file into place. */
  commit(): Promise<void>;
  /** Removes the partial file. */
  abort(): Promise<void>;
}

/** A file written incrementally under a temporary name and renamed into place by commit(). */
export async function openAtomicFile(path: string): Promise<AtomicFile> {
  const tmp = temporarySibling(path);
  pending.add(tmp);
  let handle: FileHandle;
  try {
    handle = await open(tmp, 'w');
  } catch (err) {
    pending.delete(tmp);
    throw ioErrorFrom(err, path, 'write');
  }
  let closed = false;
  const close = async (): Promise<void> => {
    if (!closed) {
      closed = true;
      await handle.close();
    }
  };
  return {
    async write(text) {
      try {
        await handle.write(text);
      } catch (err) {
        throw ioErrorFrom(err, path, 'write');
      }
    },
    async commit() {
      await close();
      try {
        await rename(tmp, path);
      } catch (err) {
        throw ioErrorFrom(err, path, 'write');
      } finally {
        pending.delete(tmp);
      }
    },
    async abort() {
      await close();
      await rm(tmp, { force: true });
      pending.delete(tmp);
    },
  };
}
