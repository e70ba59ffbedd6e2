/** Download progress on stderr with cli-progress: a total bar and one bar per file in flight (TTY only). */
import cliProgress from 'cli-progress';
import type { Log } from '../log.js';
import type { DownloadProgress } from './download.js';
import { formatBytes } from '../io/fs.js';


export interface DownloadBars extends DownloadProgress {
  stop(): void;
}

const none: DownloadBars = { fileStart: () => {}, fileAdvance: () => {}, fileDone: () => {}, stop: () => {} };

/** Bars only on a terminal, never with --quiet or HF_HUB_DISABLE_PROGRESS_BARS (logs and pipes stay clean). */
export function downloadBars(log: Log, stream: NodeJS.WriteStream = process.stderr): DownloadBars {
  if (log.isQuiet || stream.isTTY !== true || process.env.HF_HUB_DISABLE_PROGRESS_BARS) return none;
  const multi = new cliProgress.MultiBar(
    {
      stream,
      format: '{name} {bar} {percentage}% | {done}/{size}',
      hideCursor: true,
      clearOnComplete: true,
      autopadding: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const total = multi.create(0, 0, { name: 'total', done: '0 B', size: '?' });
  let totalSize = 0;
  let totalDone = 0;
  const bars = new Map<string, { bar: cliProgress.SingleBar; done: number; size: number }>();
  const redrawTotal = (): void => {
    total.setTotal(Math.max(totalSize, 1));
    total.update(totalDone, { done: formatBytes(totalDone), size: formatBytes(totalSize) });
  };
  return {
    fileStart(path, size) {
      const s = size ?? 0;
      totalSize += s;
      bars.set(path, { bar: multi.create(Math.max(s, 1), 0, { name: path, done: '0 B', size: formatBytes(s) }), done: 0, size: s });
      redrawTotal();
    },
    fileAdvance(path, bytes) {
      const b = bars.get(path);
      totalDone += bytes;
      if (b) {
        b.done += bytes;
        b.bar.update(b.done, { done: formatBytes(b.done), size: formatBytes(b.size) });
      }
      redrawTotal();
    },
    fileDone(path) {
      const b = bars.get(path);
      if (b) {
        multi.remove(b.bar);
        bars.delete(path);
      }
    },
    stop() {
      multi.stop();
    },
  };
}
