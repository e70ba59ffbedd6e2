import { Chalk, supportsColorStderr, type ChalkInstance } from 'chalk';

/** Everything that is not a result goes to stderr through this, so stdout stays clean for pipelines. */
export interface Log {
  /** Shown unless --quiet. */
  info(message: string): void;
  /** A warning or a notice about a slower path; shown unless --quiet. */
  notice(message: string): void;
  /** Shown only with --verbose. */
  verbose(message: string): void;
  readonly isVerbose: boolean;
  readonly isQuiet: boolean;
  /** Colours for stderr (plain when colour is off). */
  readonly color: ChalkInstance;
}

export interface LogOptions {
  verbose: boolean;
  quiet: boolean;
  color: boolean;
  stream?: NodeJS.WritableStream;
}

export function createLog(options: LogOptions): Log {
  const stream = options.stream ?? process.stderr;
  const level = options.color && supportsColorStderr ? supportsColorStderr.level : 0;
  const color = new Chalk({ level });
  const write = (line: string): void => {
    stream.write(line.endsWith('\n') ? line : `${line}\n`);
  };
  return {
    info: (m) => {
      if (!options.quiet) write(m);
    },
    notice: (m) => {
      if (!options.quiet) write(color.yellow(`tfhf: ${m}`));
    },
    verbose: (m) => {
      if (options.verbose) write(color.dim(m));
    },
    isVerbose: options.verbose,
    isQuiet: options.quiet,
    color,
  };
}

/** A log that drops everything (library use and tests). */
export const silentLog: Log = createLog({ verbose: false, quiet: true, color: false });
