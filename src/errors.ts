/**
 * Typed errors. Every failure a user can cause or fix carries an exit code and a one-line hint;
 * only the CLI entry turns them into `process.exitCode` (codes documented in docs/errors.md).
 */

export const ExitCode = {
  internal: 1,
  usage: 2,
  notFound: 3,
  network: 4,
  badFormat: 5,
  unsupported: 6,
  io: 7,
  interrupted: 130,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export interface ErrorOptions {
  /** What the user can do about it, shown after the message. */
  hint?: string;
  cause?: unknown;
}

export abstract class TfhfError extends Error {
  abstract readonly exitCode: ExitCodeValue;
  readonly hint: string | undefined;

  constructor(message: string, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.hint = options.hint;
  }
}

/** Bad command-line usage: option values, missing arguments. */
export class UsageError extends TfhfError {
  readonly exitCode = ExitCode.usage;
}

/** A file, directory, model, repo or revision that does not exist. */
export class NotFoundError extends TfhfError {
  readonly exitCode = ExitCode.notFound;
}

/** Network or Hub protocol failure. */
export class HubError extends TfhfError {
  readonly exitCode = ExitCode.network;
}

/** A file whose content is malformed or untrusted content that was refused. */
export class FormatError extends TfhfError {
  readonly exitCode = ExitCode.badFormat;
}

/** Valid input that this version does not support (architecture, dtype, format variant). */
export class UnsupportedError extends TfhfError {
  readonly exitCode = ExitCode.unsupported;
}

/** Local I/O failure: unwritable directory, disk full, permission denied. */
export class IoError extends TfhfError {
  readonly exitCode = ExitCode.io;
}

/** Wraps a Node.js fs error with a message naming the path and what to do. */
export function ioErrorFrom(err: unknown, path: string, action: string): TfhfError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return new NotFoundError(`cannot ${action} ${path}: no such file or directory`, { cause: err });
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new IoError(`cannot ${action} ${path}: permission denied`, {
        hint: 'choose a writable location or fix the permissions',
        cause: err,
      });
    case 'ENOSPC':
      return new IoError(`cannot ${action} ${path}: no space left on device`, {
        hint: 'free some disk space or write to another disk',
        cause: err,
      });
    case 'ENOTDIR':
      return new IoError(`cannot ${action} ${path}: a parent is not a directory`, { cause: err });
    default:
      return new IoError(`cannot ${action} ${path}: ${(err as Error | undefined)?.message ?? String(err)}`, {
        cause: err,
      });
  }
}
