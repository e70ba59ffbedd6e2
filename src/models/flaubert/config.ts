/**
 * FlaubertConfig as transformers 4.37 reads it (configuration_flaubert.py on top of XLMConfig's fields),
 * parsed once into typed values with the same defaults. Settings that change what the model is (a causal
 * decoder, the adaptive softmax head) are refused rather than half-supported.
 */
import { FormatError, UnsupportedError } from '../../errors.js';

export type FlaubertActivation = 'gelu' | 'relu';

export interface FlaubertConfig {
  /** `vocab_size` (XLM's `n_words`): rows of the embedding table and logits of the LM head. */
  readonly vocabSize: number;
  readonly embDim: number;
  readonly nLayers: number;
  readonly nHeads: number;
  /** Feed-forward width: XLM hard-codes 4 · emb_dim. */
  readonly hiddenDim: number;
  readonly maxPositionEmbeddings: number;
  /** The position table is sinusoidal (stored in the checkpoint all the same; computed only if absent). */
  readonly sinusoidalEmbeddings: boolean;
  readonly nLangs: number;
  readonly useLangEmb: boolean;
  /** layer_norm1/2 before each sub-layer (no final norm) instead of after each residual addition. */
  readonly preNorm: boolean;
  /** `gelu_activation`: exact (erf) gelu, else relu. */
  readonly activation: FlaubertActivation;
  readonly layerNormEps: number;
  readonly padIndex: number;
  readonly maskIndex: number;
  /** `pred_layer.proj.weight` is `transformer.embeddings.weight` (transformers' default). */
  readonly tieWordEmbeddings: boolean;
}

type Json = Readonly<Record<string, unknown>>;

function int(c: Json, key: string, fallback: number, min = 0): number {
  const v = c[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    throw new FormatError(`config.json: ${key} must be an integer >= ${min} (got ${JSON.stringify(v)})`);
  }
  return v;
}

function num(c: Json, key: string, fallback: number): number {
  const v = c[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
    throw new FormatError(`config.json: ${key} must be a non-negative number (got ${JSON.stringify(v)})`);
  }
  return v;
}

function bool(c: Json, key: string, fallback: boolean): boolean {
  const v = c[key] ?? fallback;
  if (typeof v !== 'boolean') throw new FormatError(`config.json: ${key} must be true or false (got ${JSON.stringify(v)})`);
  return v;
}

export function parseFlaubertConfig(raw: Json): FlaubertConfig {
  if (raw.model_type !== undefined && raw.model_type !== 'flaubert') {
    throw new UnsupportedError(`model type '${String(raw.model_type)}' is not a FlauBERT model`, {
      hint: 'fill-mask runs FlauBERT (model_type "flaubert") and, by span generation, T5-family models',
    });
  }
  if (bool(raw, 'causal', false)) {
    throw new UnsupportedError('config.json: causal FlauBERT (a decoder) is not supported', {
      hint: 'transformers itself only runs FlauBERT as an encoder; use a masked-LM checkpoint (causal: false)',
    });
  }
  if (bool(raw, 'asm', false)) {
    throw new UnsupportedError('config.json: the adaptive softmax output layer (asm: true) is not supported', {
      hint: 'use a checkpoint with the plain linear output layer (asm: false), as the Hub FlauBERT models have',
    });
  }
  // XLMConfig's defaults (FlaubertConfig adds pre_norm and layerdrop).
  const embDim = int(raw, 'emb_dim', 2048, 1);
  const nHeads = int(raw, 'n_heads', 16, 1);
  if (embDim % nHeads !== 0) {
    throw new FormatError(`config.json: emb_dim ${embDim} is not a multiple of n_heads ${nHeads}`);
  }
  const config: FlaubertConfig = {
    vocabSize: int(raw, 'vocab_size', 30145, 1),
    embDim,
    nLayers: int(raw, 'n_layers', 12),
    nHeads,
    hiddenDim: 4 * embDim,
    maxPositionEmbeddings: int(raw, 'max_position_embeddings', 512, 1),
    sinusoidalEmbeddings: bool(raw, 'sinusoidal_embeddings', false),
    nLangs: int(raw, 'n_langs', 1, 1),
    useLangEmb: bool(raw, 'use_lang_emb', true),
    preNorm: bool(raw, 'pre_norm', false),
    activation: bool(raw, 'gelu_activation', true) ? 'gelu' : 'relu',
    layerNormEps: num(raw, 'layer_norm_eps', 1e-12),
    padIndex: int(raw, 'pad_index', 2),
    maskIndex: int(raw, 'mask_index', 5),
    tieWordEmbeddings: bool(raw, 'tie_word_embeddings', true),
  };
  for (const [key, id] of [['pad_index', config.padIndex], ['mask_index', config.maskIndex]] as const) {
    if (id >= config.vocabSize) throw new FormatError(`config.json: ${key} ${id} is outside the vocabulary (${config.vocabSize})`);
  }
  return Object.freeze(config);
}

/** Float32 bytes of the weights a config implies, for a memory-budget check before loading. */
export function flaubertWeightBytes(c: FlaubertConfig, options: { lmHead?: boolean } = {}): number {
  const d = c.embDim;
  const layer = 4 * (d * d + d) + (d * c.hiddenDim + c.hiddenDim) + (c.hiddenDim * d + d) + 2 * 2 * d;
  const embeddings = c.vocabSize * d + c.maxPositionEmbeddings * d + 2 * d + (c.nLangs > 1 && c.useLangEmb ? c.nLangs * d : 0);
  const head = options.lmHead === false ? 0 : c.vocabSize + (c.tieWordEmbeddings ? 0 : c.vocabSize * d);
  return 4 * (embeddings + c.nLayers * layer + head);
}
