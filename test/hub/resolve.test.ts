import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { NotFoundError } from '../../src/errors.js';
import { resolveModelDir } from '../../src/hub/resolve.js';
import { parseModelSpec } from '../../src/hub/repo-id.js';
import { tempDir } from '../helpers/tmp.js';

test('model specs: org/name, bare legacy names, @revision; paths and bad names are not repo ids', () => {
  assert.deepEqual(parseModelSpec('google/flan-t5-small'), { repoId: 'google/flan-t5-small', revision: 'main' });
  assert.deepEqual(parseModelSpec('t5-small@refs/pr/1'), { repoId: 't5-small', revision: 'refs/pr/1' });
  for (const bad of ['./x/y', '/abs/path', 'a/b/c', 'a--b/c', 'x.git', '-x/y']) assert.equal(parseModelSpec(bad), undefined, bad);
});

test('a local directory wins; a Hub id resolves through refs/<rev> to its snapshot', async () => {
  const cache = await tempDir();
  const commit = 'a'.repeat(40);
  const repo = join(cache, 'models--google--flan-t5-small');
  await mkdir(join(repo, 'refs'), { recursive: true });
  await mkdir(join(repo, 'snapshots', commit), { recursive: true });
  await writeFile(join(repo, 'refs', 'main'), commit);
  assert.equal(await resolveModelDir('google/flan-t5-small', { cacheDir: cache }), join(repo, 'snapshots', commit));
  assert.equal(await resolveModelDir(`google/flan-t5-small@${commit}`, { cacheDir: cache }), join(repo, 'snapshots', commit));
  await assert.rejects(resolveModelDir('google/flan-t5-small@v2', { cacheDir: cache, offline: true }), NotFoundError);
  assert.equal(await resolveModelDir(cache, { cacheDir: cache }), cache);
});
