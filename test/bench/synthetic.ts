/**
 * Random-weight checkpoints with the real tensor names and shapes of a Hub config, for benchmarks:
 * real weights cannot be fetched here, and speed and memory depend only on the shapes.
 */
import { open, copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';

export interface T5ShapeConfig {
  d_model: number;
  d_kv: number;
  d_ff: number;
  num_heads: number;
  num_layers: number;
  num_decoder_layers?: number;
  vocab_size: number;
  relative_attention_num_buckets: number;
  feed_forward_proj: string;
  tie_word_embeddings?: boolean;
}

/** Name → shape of every tensor of a T5ForConditionalGeneration state dict as save_pretrained writes it. */
export function t5TensorShapes(c: T5ShapeConfig): [string, number[]][] {
  const inner = c.num_heads * c.d_kv;
  const gated = c.feed_forward_proj.startsWith('gated-');
  const out: [string, number[]][] = [['shared.weight', [c.vocab_size, c.d_model]]];
  const attention = (prefix: string, bias: boolean): void => {
    for (const p of ['q', 'k', 'v']) out.push([`${prefix}.${p}.weight`, [inner, c.d_model]]);
    out.push([`${prefix}.o.weight`, [c.d_model, inner]]);
    if (bias) out.push([`${prefix}.relative_attention_bias.weight`, [c.relative_attention_num_buckets, c.num_heads]]);
  };
  const ff = (prefix: string): void => {
    if (gated) {
      out.push([`${prefix}.DenseReluDense.wi_0.weight`, [c.d_ff, c.d_model]]);
      out.push([`${prefix}.DenseReluDense.wi_1.weight`, [c.d_ff, c.d_model]]);
    } else {
      out.push([`${prefix}.DenseReluDense.wi.weight`, [c.d_ff, c.d_model]]);
    }
    out.push([`${prefix}.DenseReluDense.wo.weight`, [c.d_model, c.d_ff]]);
    out.push([`${prefix}.layer_norm.weight`, [c.d_model]]);
  };
  for (const [stack, layers] of [['encoder', c.num_layers], ['decoder', c.num_decoder_layers ?? c.num_layers]] as const) {
    for (let i = 0; i < layers; i++) {
      const b = `${stack}.block.${i}.layer`;
      attention(`${b}.0.SelfAttention`, i === 0);
      out.push([`${b}.0.layer_norm.weight`, [c.d_model]]);
      if (stack === 'decoder') {
        attention(`${b}.1.EncDecAttention`, false);
        out.push([`${b}.1.layer_norm.weight`, [c.d_model]]);
      }
      ff(`${b}.${stack === 'decoder' ? 2 : 1}`);
    }
    out.push([`${stack}.final_layer_norm.weight`, [c.d_model]]);
  }
  if (c.tie_word_embeddings === false) out.push(['lm_head.weight', [c.vocab_size, c.d_model]]);
  return out;
}

/** A deterministic PRNG (mulberry32) so benchmark inputs are the same on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Writes `model.safetensors` (F32, small random values) tensor by tensor, never holding the whole file. */
export async function writeRandomSafetensors(path: string, shapes: [string, number[]][], seed = 1): Promise<number> {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let pos = 0;
  for (const [name, shape] of shapes) {
    const bytes = shape.reduce((a, b) => a * b, 1) * 4;
    header[name] = { dtype: 'F32', shape, data_offsets: [pos, pos + bytes] };
    pos += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  const handle = await open(path, 'w');
  try {
    await handle.write(prefix);
    await handle.write(Buffer.from(json));
    const rand = prng(seed);
    for (const [name, shape] of shapes) {
      const values = new Float32Array(shape.reduce((a, b) => a * b, 1));
      const std = name.endsWith('layer_norm.weight') ? 0 : 0.05;
      for (let i = 0; i < values.length; i++) values[i] = std === 0 ? 1 : (rand() - 0.5) * 2 * std;
      await handle.write(new Uint8Array(values.buffer));
    }
  } finally {
    await handle.close();
  }
  return 8 + json.length + pos;
}

/** A Hub-layout directory with the given config files and random T5 weights of its shapes. */
export async function makeRandomT5Dir(hubModelDir: string, dest: string, config: T5ShapeConfig): Promise<number> {
  await mkdir(dest, { recursive: true });
  for (const f of ['config.json', 'generation_config.json', 'spiece.model', 'tokenizer.json']) {
    await copyFile(join(hubModelDir, f), join(dest, f)).catch(() => undefined);
  }
  return writeRandomSafetensors(join(dest, 'model.safetensors'), t5TensorShapes(config));
}

/** Name → shape of a FlaubertWithLMHeadModel state dict (tied output projection stored once, as safetensors does). */
export function flaubertTensorShapes(c: { emb_dim: number; n_layers: number; vocab_size: number; max_position_embeddings: number }): [string, number[]][] {
  const d = c.emb_dim;
  const out: [string, number[]][] = [
    ['transformer.embeddings.weight', [c.vocab_size, d]],
    ['transformer.position_embeddings.weight', [c.max_position_embeddings, d]],
    ['transformer.layer_norm_emb.weight', [d]],
    ['transformer.layer_norm_emb.bias', [d]],
    ['pred_layer.proj.bias', [c.vocab_size]],
  ];
  for (let i = 0; i < c.n_layers; i++) {
    for (const p of ['q_lin', 'k_lin', 'v_lin', 'out_lin']) {
      out.push([`transformer.attentions.${i}.${p}.weight`, [d, d]], [`transformer.attentions.${i}.${p}.bias`, [d]]);
    }
    out.push([`transformer.ffns.${i}.lin1.weight`, [4 * d, d]], [`transformer.ffns.${i}.lin1.bias`, [4 * d]]);
    out.push([`transformer.ffns.${i}.lin2.weight`, [d, 4 * d]], [`transformer.ffns.${i}.lin2.bias`, [d]]);
    for (const n of ['layer_norm1', 'layer_norm2']) out.push([`transformer.${n}.${i}.weight`, [d]], [`transformer.${n}.${i}.bias`, [d]]);
  }
  return out;
}
