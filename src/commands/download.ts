/** `tfhf download`: a repo revision (or some of its files) into the shared Hugging Face cache. */
import { UsageError } from '../errors.js';
import type { Log } from '../log.js';
import { copyToLocalDir, downloadSnapshot, type SnapshotResult } from '../hub/download.js';
import { downloadBars } from '../hub/progress.js';
import { parseModelSpec } from '../hub/repo-id.js';
import { hubSession } from '../hub/session.js';

export interface DownloadCommandOptions {
  repoId: string;
  files: string[];
  revision?: string | undefined;
  include?: string[] | undefined;
  exclude?: string[] | undefined;
  cacheDir?: string | undefined;
  localDir?: string | undefined;
  token?: string | undefined;
  all?: boolean | undefined;
  offline?: boolean | undefined;
  maxWorkers?: number | undefined;
  log: Log;
}

export interface DownloadCommandResult extends SnapshotResult {
  /** What to print: the local dir when --local-dir, else the snapshot. */
  path: string;
}

export async function runDownload(o: DownloadCommandOptions): Promise<DownloadCommandResult> {
  const ref = parseModelSpec(o.repoId);
  if (!ref) throw new UsageError(`'${o.repoId}' is not a valid Hub repo id`, { hint: 'write org/name, e.g. google/flan-t5-small' });
  if (o.revision !== undefined && o.repoId.includes('@')) throw new UsageError('give the revision either with @ or with --revision, not both');
  const revision = o.revision ?? ref.revision;
  if (revision === '') throw new UsageError('--revision must not be empty');
  const bars = downloadBars(o.log);
  const session = hubSession({ cacheDir: o.cacheDir, token: o.token, offline: o.offline, maxWorkers: o.maxWorkers, progress: bars });
  let result: SnapshotResult;
  try {
    result = await downloadSnapshot(session, {
      repoId: ref.repoId,
      revision,
      files: o.files,
      include: o.include,
      exclude: o.exclude,
      all: o.all,
    });
  } finally {
    bars.stop();
  }
  o.log.verbose(`${result.downloaded.length} file(s) downloaded, ${result.files.length - result.downloaded.length} already cached`);
  if (o.localDir) {
    await copyToLocalDir(result.snapshot, result.files, o.localDir, result.commit);
    return { ...result, path: o.localDir };
  }
  return { ...result, path: result.snapshot };
}
