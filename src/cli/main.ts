/** Process entry: parses the command line, runs the command, maps errors to one line and an exit code. */
import { CommanderError } from 'commander';
import { ExitCode, TfhfError } from '../errors.js';
import { removePendingTemporaries } from '../io/atomic.js';
import { colorEnabled } from './context.js';
import { createLog } from '../log.js';
import { buildProgram } from './program.js';

const argv = process.argv.slice(2);
const verbose = argv.includes('--verbose');
const log = createLog({ verbose, quiet: false, color: colorEnabled(argv.includes('--no-color') ? false : undefined) });

function onSignal(signal: NodeJS.Signals): void {
  removePendingTemporaries();
  process.stderr.write(`tfhf: interrupted (${signal})\n`);
  process.exit(signal === 'SIGINT' ? ExitCode.interrupted : 128 + 15);
}
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);
// A closed stdout (`tfhf ... | head`) is a normal end of a pipeline, not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

function report(err: unknown): number {
  if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : ExitCode.usage;
  const c = log.color;
  if (err instanceof TfhfError) {
    const hint = err.hint ? ` ${c.dim(`(${err.hint})`)}` : '';
    process.stderr.write(`${c.red('tfhf: error:')} ${err.message}${hint}\n`);
    if (verbose && err.stack) process.stderr.write(`${err.stack}\n`);
    return err.exitCode;
  }
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`${c.red('tfhf: internal error:')} ${message} ${c.dim('(run with --verbose for details; please report it)')}\n`);
  if (verbose && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  return ExitCode.internal;
}

const program = buildProgram();
try {
  await program.parseAsync(process.argv);
} catch (err) {
  process.exitCode = report(err);
}
