import type { Command } from 'commander';
import { Option } from 'commander';
import type { ConvertDtype } from '../commands/convert.js';
import { UsageError } from '../errors.js';
import { contextFrom } from './context.js';
import { byteProgressBar } from './progress.js';

function parseByteSize(value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?$/i.exec(value.trim());
  if (!m) throw new UsageError(`invalid --shard-size '${value}'`, { hint: 'give bytes, e.g. 4194304 or 4MiB' });
  const unit = (m[2] ?? 'b').toLowerCase();
  const scale: Record<string, number> = { b: 1, kb: 1e3, kib: 2 ** 10, mb: 1e6, mib: 2 ** 20, gb: 1e9, gib: 2 ** 30 };
  const bytes = Math.floor(Number(m[1]) * (scale[unit] ?? 1));
  if (bytes < 1024) throw new UsageError(`--shard-size ${value} is too small`, { hint: 'use at least 1 KiB' });
  return bytes;
}

export function registerConvert(program: Command): void {
  program
    .command('convert')
    .description('convert a checkpoint (safetensors, PyTorch .bin, sharded) to TensorFlow.js artifacts')
    .argument('<model>', 'model directory in Hugging Face Hub layout (config.json + weights + tokenizer files)')
    .option('-o, --output <dir>', 'output directory (default: ./<model name>-tfjs)')
    .addOption(
      new Option('--dtype <dtype>', 'weight storage: float16/uint8 use the tfjs manifest quantization fields')
        .choices(['float32', 'float16', 'uint8'])
        .default('float32'),
    )
    .option('--shard-size <bytes>', 'maximum bytes per weight shard (like tensorflowjs_converter)', '4194304')
    .option('-f, --force', 'replace the output directory if it exists')
    .action(
      async (
        model: string,
        opts: { output?: string; dtype: ConvertDtype; shardSize: string; force?: boolean },
        command: Command,
      ) => {
        const ctx = contextFrom(command);
        const { convertModel } = await import('../commands/convert.js');
        const bar = byteProgressBar(ctx.log, 'converting');
        const result = await convertModel({
          modelDir: model,
          outputDir: opts.output,
          dtype: opts.dtype,
          shardBytes: parseByteSize(opts.shardSize),
          overwrite: opts.force === true,
          log: ctx.log,
          onProgress: (done, total) => bar.update(done, total),
        }).finally(() => bar.stop());
        ctx.log.info(
          `converted ${result.tensors} tensors (${result.aliases} tied aliases) into ${result.shards} shards at ${result.outputDir}`,
        );
        ctx.stdout.write(`${result.outputDir}\n`);
      },
    );
}
