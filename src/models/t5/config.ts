/**
 * T5Config as transformers 4.37 reads it (configuration_t5.py), parsed once into typed values with
 * the same defaults; `feed_forward_proj` becomes {gated, activation} so model code never re-reads strings.
 */
import { FormatError, UnsupportedError } from '../../errors.js';

export type T5Activation = 'relu' | 'gelu_new' | 'silu' | 'gelu';

export interface T5Config {
  readonly vocabSize: number;
  readonly dModel: number;
  readonly dKv: number;
  readonly dFf: number;
  readonly numLayers: number;
  readonly numDecoderLayers: number;
  readonly numHeads: number;
  readonly relativeAttentionNumBuckets: number;
  readonly relativeAttentionMaxDistance: number;
  readonly layerNormEpsilon: number;
  readonly gated: boolean;
  readonly activation: T5Activation;
  readonly tieWordEmbeddings: boolean;
  readonly decoderStartTokenId: number;
  readonly padTokenId: number;
  readonly eosTokenId: number | readonly number[];
}

type Json = Record<string, unknown>;

function int(c: Json, key: string, fallback?: number): number {
  const v = c[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
    throw new FormatError(`config.json: ${key} must be a non-negative integer (got ${JSON.stringify(v)})`);
  }
  return v;
}

function num(c: Json, key: string, fallback: number): number {
  const v = c[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new FormatError(`config.json: ${key} must be a number`);
  return v;
}

const ACTIVATIONS: Record<string, T5Activation> = { relu: 'relu', gelu: 'gelu', gelu_new: 'gelu_new', silu: 'silu', swish: 'silu' };

/** transformers' rule: "gated-gelu" means gelu_new (for backwards compatibility), "gated-X" otherwise X. */
function parseFeedForward(proj: string): { gated: boolean; activation: T5Activation } {
  const parts = proj.split('-');
  const gated = parts[0] === 'gated';
  const name = parts[parts.length - 1] as string;
  if (parts.length > 2 || (parts.length === 2 && !gated) || !(name in ACTIVATIONS)) {
    throw new UnsupportedError(`config.json: feed_forward_proj '${proj}' is not supported`, {
      hint: "use 'relu', 'gated-gelu', 'gated-silu' or another '[gated-]ACT' form transformers accepts",
    });
  }
  return { gated, activation: proj === 'gated-gelu' ? 'gelu_new' : (ACTIVATIONS[name] as T5Activation) };
}

export function parseT5Config(raw: Json): T5Config {
  if (raw.model_type !== undefined && raw.model_type !== 't5') {
    throw new UnsupportedError(`model type '${String(raw.model_type)}' is not a T5 model`, {
      hint: 'generate runs T5, FLAN-T5 and FLAN-UL2 (model_type "t5")',
    });
  }
  const numLayers = int(raw, 'num_layers', 6);
  const eos = raw.eos_token_id ?? 1;
  const eosTokenId = Array.isArray(eos) ? eos.map((e) => Number(e)) : Number(eos);
  return {
    vocabSize: int(raw, 'vocab_size', 32128),
    dModel: int(raw, 'd_model', 512),
    dKv: int(raw, 'd_kv', 64),
    dFf: int(raw, 'd_ff', 2048),
    numLayers,
    numDecoderLayers: raw.num_decoder_layers == null ? numLayers : int(raw, 'num_decoder_layers'),
    numHeads: int(raw, 'num_heads', 8),
    relativeAttentionNumBuckets: int(raw, 'relative_attention_num_buckets', 32),
    relativeAttentionMaxDistance: int(raw, 'relative_attention_max_distance', 128),
    layerNormEpsilon: num(raw, 'layer_norm_epsilon', 1e-6),
    ...parseFeedForward(typeof raw.feed_forward_proj === 'string' ? raw.feed_forward_proj : 'relu'),
    tieWordEmbeddings: raw.tie_word_embeddings === undefined ? true : raw.tie_word_embeddings === true,
    decoderStartTokenId: int(raw, 'decoder_start_token_id', 0),
    padTokenId: int(raw, 'pad_token_id', 0),
    eosTokenId,
  };
}
