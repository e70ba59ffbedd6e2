import type { Command } from 'commander';
import { parseBackendChoice, type BackendChoice } from '../backend/choice.js';
import { Chalk, supportsColor, type ChalkInstance } from 'chalk';
import { createLog, type Log } from '../log.js';

/** The global options, parsed once per invocation and handed to every command. */
export interface CliContext {
  readonly backend: BackendChoice;
  readonly log: Log;
  readonly stdout: NodeJS.WritableStream;
  readonly stdoutIsTTY: boolean;
  /** Colours for human output on stdout (none when stdout is not a terminal or colour is off). */
  readonly stdoutColor: ChalkInstance;
}

interface RawGlobals {
  backend?: string;
  verbose?: boolean;
  quiet?: boolean;
  color?: boolean;
}

export function colorEnabled(flag: boolean | undefined, env: NodeJS.ProcessEnv = process.env): boolean {
  // https://no-color.org: any non-empty NO_COLOR disables colour; --no-color does too.
  if (flag === false) return false;
  return !(env.NO_COLOR !== undefined && env.NO_COLOR !== '');
}

export function contextFrom(command: Command): CliContext {
  const raw = command.optsWithGlobals<RawGlobals>();
  const verbose = raw.verbose === true;
  const color = colorEnabled(raw.color);
  const stdoutIsTTY = process.stdout.isTTY === true;
  return {
    backend: parseBackendChoice(raw.backend ?? 'auto'),
    log: createLog({ verbose, quiet: raw.quiet === true && !verbose, color }),
    stdout: process.stdout,
    stdoutIsTTY,
    stdoutColor: new Chalk({ level: color && stdoutIsTTY && supportsColor ? supportsColor.level : 0 }),
  };
}
