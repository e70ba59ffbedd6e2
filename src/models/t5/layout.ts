/**
 * Which T5 checkpoint tensors the model multiplies as [in, out] (PyTorch stores Linear weights [out, in]).
 * Free of TensorFlow.js so that `tfhf convert` can use it: converted artifacts store these tensors
 * transposed, and loading them is then a copy (docs/conversion.md).
 *
 * The decoder's matrices and the lm_head are XNNPACK's packed weights in every decode step (x @ W);
 * the encoder's matrices and the cross-attention keys/values multiply transposed activations as stored
 * (W @ xᵀ, see model.ts) and stay [out, in].
 */
import type { T5Config } from './config.js';

const DECODER_IN_OUT = /^decoder\.block\.\d+\.layer\.(0\.SelfAttention\.[qkvo]|1\.EncDecAttention\.[qo]|2\.DenseReluDense\.(wi|wi_0|wi_1|wo))\.weight$/;
/** With tied embeddings, one [dModel, vocab] table is both the lm_head and (by columns) the embedding. */
const TIED_NAMES = new Set(['shared.weight', 'encoder.embed_tokens.weight', 'decoder.embed_tokens.weight', 'lm_head.weight']);

/** True for the names of tensors the T5 model uses transposed, [in, out]. */
export function t5UsesTransposed(config: Pick<T5Config, 'tieWordEmbeddings'>): (name: string) => boolean {
  return (name) => DECODER_IN_OUT.test(name) || (config.tieWordEmbeddings ? TIED_NAMES.has(name) : name === 'lm_head.weight');
}
