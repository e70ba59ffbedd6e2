/**
 * `tfhf convert`: a Hub-layout model directory → a self-contained TensorFlow.js directory
 * (model.json + weight shards + config and tokenizer files). Tensors stream one at a time from the
 * source into the shards, and the output appears only once it is complete.
 */
import { createHash } from 'node:crypto';
import { copyFile, readFile, stat } from 'node:fs/promises';
import { basename, join, relative, resolve } from 'node:path';
import { FormatError, ioErrorFrom, NotFoundError, UsageError } from '../errors.js';
import { openCheckpoint } from '../formats/checkpoint.js';
import { isFloatDType } from '../formats/tensor.js';
import {
  encodeTensor,
  ShardWriter,
  transposeTensor,
  TFJS_FORMAT,
  TFJS_MODEL_JSON,
  type ModelJson,
  type SourceFile,
  type StorageDtype,
  type WeightsManifestEntry,
} from '../formats/tfjs-artifacts.js';
import { buildDirAtomic, writeFileAtomic } from '../io/atomic.js';
import { sha256File } from '../io/hash.js';
import type { Log } from '../log.js';
import { parseT5Config } from '../models/t5/config.js';
import { t5UsesTransposed } from '../models/t5/layout.js';
import { TFHF_VERSION } from '../version.js';

export type ConvertDtype = StorageDtype;

export interface ConvertOptions {
  modelDir: string;
  /** Defaults to ./<model dir name>-tfjs. */
  outputDir?: string | undefined;
  dtype: ConvertDtype;
  /** Maximum bytes per shard file. */
  shardBytes: number;
  /** Replace an existing output directory. */
  overwrite: boolean;
  log: Log;
  /** Called after each tensor with bytes done and total source bytes. */
  onProgress?: (done: number, total: number) => void;
}

export interface ConvertResult {
  outputDir: string;
  tensors: number;
  aliases: number;
  shards: number;
  bytesWritten: number;
}

/** Files besides the weights that make the output usable by every command (`-m DIR`). */
export const MODEL_SIDE_FILES = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'added_tokens.json',
  'spiece.model',
  'vocab.json',
  'merges.txt',
] as const;

async function readJsonObject(path: string, what: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw ioErrorFrom(err, path, `read ${what}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new FormatError(`${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new FormatError(`${path} does not hold a JSON object`);
  }
  return value as Record<string, unknown>;
}

/**
 * Tensors to store transposed: those the model multiplies as [in, out] (T5's decoder and lm_head), so
 * that loading them is a copy rather than a transpose (docs/conversion.md). Other families: none.
 */
function transposedWeights(config: Record<string, unknown>): (name: string) => boolean {
  if (config.model_type !== 't5') return () => false;
  try {
    return t5UsesTransposed(parseT5Config(config));
  } catch {
    return () => false; // a config the model cannot run either: convert as stored
  }
}

async function existingFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

export async function convertModel(options: ConvertOptions): Promise<ConvertResult> {
  const modelDir = resolve(options.modelDir);
  let isDir = false;
  try {
    isDir = (await stat(modelDir)).isDirectory();
  } catch {
    // reported below
  }
  if (!isDir) {
    throw new NotFoundError(`model directory ${options.modelDir} does not exist`, {
      hint: 'give a local directory in Hugging Face Hub layout (config.json, weights, tokenizer files)',
    });
  }
  const configPath = join(modelDir, 'config.json');
  if (!(await existingFile(configPath))) {
    throw new NotFoundError(`${options.modelDir} has no config.json`, {
      hint: 'a Hub model directory needs config.json beside its weights',
    });
  }
  const config = await readJsonObject(configPath, 'config');
  const generationPath = join(modelDir, 'generation_config.json');
  const generationConfig = (await existingFile(generationPath))
    ? await readJsonObject(generationPath, 'generation config')
    : undefined;

  const { reader, files } = await openCheckpoint(modelDir);
  try {
    if (files.format === 'tfjs') {
      throw new UsageError(`${options.modelDir} is already a converted TensorFlow.js model`, {
        hint: 'use it directly with -m',
      });
    }
    const outputDir = resolve(options.outputDir ?? `${basename(modelDir)}-tfjs`);
    if (outputDir === modelDir) throw new UsageError('the output directory must differ from the model directory');
    const { log } = options;
    log.verbose(`reading ${files.format} weights: ${files.files.map((f) => relative(modelDir, f)).join(', ')}`);

    const sourcePaths = files.index ? [files.index, ...files.files] : [...files.files];
    const sourceFiles: SourceFile[] = [];
    for (const p of sourcePaths) {
      sourceFiles.push({ path: relative(modelDir, p), bytes: (await stat(p)).size, sha256: await sha256File(p) });
    }
    const totalBytes = sourceFiles.reduce((s, f) => s + f.bytes, 0);

    return await buildDirAtomic(outputDir, { overwrite: options.overwrite }, async (tmp) => {
      const writer = new ShardWriter(tmp, options.shardBytes);
      const weights: WeightsManifestEntry[] = [];
      const aliases: Record<string, string> = {};
      const transposed: string[] = [];
      const storeTransposed = transposedWeights(config);
      // Tied weights (the .bin format stores them under every name) are stored once, by content and layout.
      const seen = new Map<string, string>();
      let bytesWritten = 0;
      let done = 0;
      for (const info of reader.tensors) {
        const raw = await reader.read(info.name);
        const transpose = storeTransposed(info.name) && raw.shape.length === 2 && isFloatDType(raw.dtype);
        const key = `${transpose ? 'T' : ''}|${raw.dtype}|${raw.shape.join(',')}|${createHash('sha256').update(raw.data).digest('hex')}`;
        const first = seen.get(key);
        done += raw.data.byteLength;
        if (first !== undefined) {
          aliases[info.name] = first;
        } else {
          seen.set(key, info.name);
          if (transpose) transposed.push(info.name);
          const { entry, bytes } = encodeTensor(transpose ? transposeTensor(raw) : raw, options.dtype);
          await writer.write(bytes);
          weights.push(entry);
          bytesWritten += bytes.byteLength;
        }
        options.onProgress?.(Math.min(done, totalBytes), totalBytes);
      }
      const paths = await writer.finish();
      const modelJson: ModelJson = {
        format: TFJS_FORMAT,
        generatedBy: `transformers ${String(config.transformers_version ?? 'unknown')}`,
        convertedBy: `tfhf ${TFHF_VERSION}`,
        weightsManifest: [{ paths, weights }],
        userDefinedMetadata: {
          tfhf: {
            formatVersion: transposed.length > 0 ? 2 : 1,
            sourceFormat: files.format,
            sourceFiles,
            storageDtype: options.dtype,
            aliases,
            ...(transposed.length > 0 ? { transposed } : {}),
          },
          config,
          ...(generationConfig ? { generationConfig } : {}),
        },
      };
      for (const name of MODEL_SIDE_FILES) {
        const src = join(modelDir, name);
        if (!(await existingFile(src))) continue;
        try {
          await copyFile(src, join(tmp, name));
        } catch (err) {
          throw ioErrorFrom(err, join(tmp, name), 'write');
        }
      }
      await writeFileAtomic(join(tmp, TFJS_MODEL_JSON), `${JSON.stringify(modelJson, null, 1)}\n`);
      log.verbose(
        `wrote ${weights.length} tensors (${Object.keys(aliases).length} tied aliases) in ${paths.length} shards, ${bytesWritten} bytes`,
      );
      return { outputDir, tensors: weights.length, aliases: Object.keys(aliases).length, shards: paths.length, bytesWritten };
    });
  } finally {
    await reader.close();
  }
}
