/** Shared benchmark plumbing: timing commands with /usr/bin/time, medians, machine description. */
import { spawnSync } from 'node:child_process';
import { cpus, totalmem } from 'node:os';

export interface CommandStats {
  seconds: number;
  maxRssBytes: number;
}

/** Runs a command under GNU time and returns wall seconds and peak RSS; throws if it fails. */
export function timeCommand(cmd: string, args: string[]): CommandStats {
  const r = spawnSync('/usr/bin/time', ['-f', '%e %M', cmd, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  const last = r.stderr.trim().split('\n').pop() ?? '';
  const [secs, kb] = last.split(' ').map(Number);
  return { seconds: secs ?? NaN, maxRssBytes: (kb ?? NaN) * 1024 };
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

export function machine(): string {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  return `${cpu}, ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
}

export const MiB = 2 ** 20;
