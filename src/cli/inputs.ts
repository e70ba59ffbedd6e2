/**
 * The inputs every text command takes, in one place: TEXT arguments, else stdin (one text per line),
 * or `--input FILE` (.txt one per line, .jsonl with a `text` field or `--field NAME`).
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { FormatError, ioErrorFrom, UsageError } from '../errors.js';
import { readLines } from '../io/lines.js';

export interface InputOptions {
  input?: string;
  field?: string;
}

export interface TextInput {
  /** 0-based position among the inputs, the order outputs keep. */
  readonly index: number;
  readonly text: string;
}

export function addInputOptions(command: Command): Command {
  return command
    .option('-i, --input <file>', 'read inputs from a file: .txt (one per line) or .jsonl (objects with a text field)')
    .option('--field <name>', 'the JSON field holding the text in .jsonl input (default: text)');
}

function isJsonl(path: string): boolean {
  return /\.(jsonl|ndjson)$/i.test(path);
}

function textOf(line: string, field: string, where: string): string {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new FormatError(`${where} is not valid JSON`, { hint: 'each line of a .jsonl file must be one JSON object' });
  }
  const text = (value as Record<string, unknown> | null)?.[field];
  if (typeof text !== 'string') {
    throw new FormatError(`${where} has no string field "${field}"`, { hint: 'choose the field with --field NAME' });
  }
  return text;
}

/** Yields the inputs in order. Stdin is read only when there are no TEXT arguments and no --input. */
export async function* readInputs(args: readonly string[], options: InputOptions): AsyncGenerator<TextInput> {
  if (args.length > 0 && options.input) throw new UsageError('give TEXT arguments or --input, not both');
  if (options.field && !(options.input && isJsonl(options.input)) && !(args.length === 0 && !options.input)) {
    throw new UsageError('--field applies to .jsonl input only');
  }
  let index = 0;
  if (args.length > 0) {
    for (const text of args) yield { index: index++, text };
    return;
  }
  let stream: AsyncIterable<Uint8Array | string>;
  let source: string;
  let jsonl = false;
  if (options.input) {
    source = options.input;
    jsonl = isJsonl(source);
    try {
      if (!(await stat(source)).isFile()) throw new UsageError(`--input ${source} is not a file`);
    } catch (err) {
      throw err instanceof UsageError ? err : ioErrorFrom(err, source, 'read');
    }
    stream = createReadStream(source);
  } else {
    if (process.stdin.isTTY) {
      throw new UsageError('no input', { hint: 'give TEXT arguments, pipe text on stdin (one per line), or use --input FILE' });
    }
    source = 'standard input';
    jsonl = options.field !== undefined;
    stream = process.stdin;
  }
  const field = options.field ?? 'text';
  for await (const line of readLines(stream, source)) {
    if (jsonl) {
      if (line.text.trim() === '') continue;
      yield { index: index++, text: textOf(line.text, field, `line ${line.number} of ${source}`) };
    } else {
      yield { index: index++, text: line.text };
    }
  }
}
