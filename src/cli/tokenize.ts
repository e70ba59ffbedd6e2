import type { Command } from 'commander';
import { decodeIds, parseIdList, tokenizeText, type TokenizeResult } from '../commands/tokenize.js';
import { readLines } from '../io/lines.js';
import { resolveModelDir } from '../hub/resolve.js';
import { loadTokenizer } from '../tokenizers/load.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import { contextFrom, type CliContext } from './context.js';
import { addInputOptions, readInputs } from './inputs.js';

export const DEFAULT_T5_MODEL = 'google/flan-t5-small';

interface TokenizeOptions {
  model: string;
  input?: string;
  field?: string;
  specialTokens: boolean;
  json?: boolean;
  decode?: string[] | boolean;
  skipSpecialTokens?: boolean;
  lowercase?: boolean;
}

/** Tokens in alternating colours with their ids aligned underneath (terminal only). */
function renderHuman(ctx: CliContext, r: TokenizeResult): string {
  const c = ctx.stdoutColor;
  const cells = r.tokens.map((t, i) => {
    const id = String(r.ids[i]);
    const width = Math.max([...t].length, id.length);
    const paint = i % 2 === 0 ? c.cyan : c.magenta;
    return { token: paint(t + ' '.repeat(width - [...t].length)), id: c.dim(id.padEnd(width)) };
  });
  return `${cells.map((x) => x.token).join(' ')}\n${cells.map((x) => x.id).join(' ')}\n`;
}

async function runDecode(ctx: CliContext, tokenizer: Tokenizer, opts: TokenizeOptions): Promise<void> {
  const emit = (ids: number[]): void => {
    const text = decodeIds(tokenizer, ids, opts.skipSpecialTokens === true);
    ctx.stdout.write(opts.json ? `${JSON.stringify({ ids, text })}\n` : `${text}\n`);
  };
  if (Array.isArray(opts.decode) && opts.decode.length > 0) {
    emit(parseIdList(opts.decode.join(' '), '--decode'));
    return;
  }
  for await (const line of readLines(process.stdin, 'standard input')) {
    if (line.text.trim() === '') continue;
    emit(parseIdList(line.text, `line ${line.number} of standard input`));
  }
}

export function registerTokenize(program: Command): void {
  const command = program
    .command('tokenize')
    .description('show the token ids and tokens of texts (or decode ids) exactly as transformers does')
    .argument('[text...]', 'texts to tokenize (default: one per line from stdin)')
    .option('-m, --model <model>', 'local model directory (Hub layout or converted) or Hub id', DEFAULT_T5_MODEL)
    .option('--no-special-tokens', 'do not add special tokens (add_special_tokens=False)')
    .option('--json', 'one JSON object per input: {"text", "ids", "tokens"}')
    .option('--decode [ids...]', 'decode ids (arguments, or one JSON array / space-separated list per stdin line)')
    .option('--skip-special-tokens', 'with --decode: drop special tokens')
    .option('--lowercase', 'FlauBERT: lower-case like the uncased models were trained (transformers ignores do_lower_case)')
    .action(async (texts: string[], opts: TokenizeOptions, cmd: Command) => {
      const ctx = contextFrom(cmd);
      const dir = await resolveModelDir(opts.model);
      const tokenizer = await loadTokenizer(dir, {
        doLowercase: opts.lowercase === true ? true : undefined,
        onNotice: (m) => ctx.log.notice(`${m}; pass --lowercase to lower-case`),
      });
      if (opts.decode !== undefined) {
        await runDecode(ctx, tokenizer, opts);
        return;
      }
      const human = !opts.json && ctx.stdoutIsTTY;
      for await (const input of readInputs(texts, opts)) {
        const result = tokenizeText(tokenizer, input.text, opts.specialTokens);
        if (opts.json) ctx.stdout.write(`${JSON.stringify(result)}\n`);
        else if (human) ctx.stdout.write(renderHuman(ctx, result));
        else ctx.stdout.write(`${result.ids.join(' ')}\n`);
      }
    });
  addInputOptions(command);
}
