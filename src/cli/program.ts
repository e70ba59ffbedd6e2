import { Command, Option } from 'commander';
import { BACKEND_CHOICES } from '../backend/choice.js';
import { registerConvert } from './convert.js';
import { registerDownload } from './download.js';
import { registerEnv } from './env.js';
import { registerFillMask } from './fill-mask.js';
import { registerGenerate } from './generate.js';
import { registerTokenize } from './tokenize.js';
import { TFHF_VERSION } from '../version.js';

/** The whole command tree; help text and docs/cli.md are generated from these definitions. */
export function buildProgram(): Command {
  const program = new Command('tfhf')
    .description('Run Hugging Face Hub checkpoints (FLAN-T5, FLAN-UL2, T5, FlauBERT) on TensorFlow.js')
    .version(TFHF_VERSION, '-V, --version', 'print the tfhf version')
    .addOption(
      new Option('--backend <name>', 'TensorFlow.js backend: auto picks tfjs-node-gpu if it loads, else wasm, else cpu')
        .choices(BACKEND_CHOICES)
        .default('auto'),
    )
    .option('--verbose', 'print details (backend, timings) and stack traces on errors')
    .option('-q, --quiet', 'print only results and errors')
    .option('--no-color', 'no colours (NO_COLOR is honoured too)')
    .showHelpAfterError('(run with --help for usage)')
    // Set before the subcommands are added so that they inherit them.
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(str) });
  registerConvert(program);
  registerGenerate(program);
  registerFillMask(program);
  registerTokenize(program);
  registerDownload(program);
  registerEnv(program);
  return program;
}
