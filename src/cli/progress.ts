import cliProgress from 'cli-progress';
import type { Log } from '../log.js';
import { formatBytes } from '../io/fs.js';

export interface ProgressBar {
  update(done: number, total: number): void;
  stop(): void;
}

const noBar: ProgressBar = { update: () => {}, stop: () => {} };


/** A byte-counting bar on stderr, only on a terminal and never with --quiet (pipelines and logs stay clean). */
export function byteProgressBar(log: Log, label: string): ProgressBar {
  if (log.isQuiet || process.stderr.isTTY !== true || process.env.HF_HUB_DISABLE_PROGRESS_BARS) return noBar;
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${label} {bar} {percentage}% | {doneBytes}/{totalBytes} | {eta_formatted}`,
      hideCursor: true,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(done, total) {
      const payload = { doneBytes: formatBytes(done), totalBytes: formatBytes(total) };
      if (!started) {
        bar.start(total, done, payload);
        started = true;
      } else {
        bar.setTotal(total);
        bar.update(done, payload);
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
