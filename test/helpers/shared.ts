/**
 * Locates ../shared (the reference checkpoints and golden outputs). Conformance tests must run in CI;
 * they skip, with the printed reason, only where ../shared is absent (a user's clone).
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The project root (this file compiles to dist/test/helpers/). */
export const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export const sharedDir = process.env.TFHF_SHARED_DIR ?? resolve(projectRoot, '..', 'shared');
export const referenceDir = join(sharedDir, 'reference');
export const reposDir = join(referenceDir, 'repos');
export const goldenDir = join(referenceDir, 'golden');
export const hubDir = join(sharedDir, 'hub');

const present = existsSync(join(referenceDir, 'README.md'));
if (!present && process.env.CI) {
  throw new Error(`CI must run the conformance tests, but ${referenceDir} is missing`);
}

/** `skip` option for node:test: false when ../shared is there, else the reason (printed by the runner). */
export const needsShared: string | false = present ? false : `../shared is absent (looked in ${sharedDir})`;

export function repoPath(name: string): string {
  return join(reposDir, 'tiny-random', name);
}
