/** The generation API shared by every seq2seq model. */
export type { DecoderState, EncoderBatch, Seq2SeqModel } from './seq2seq.js';
export {
  resolveGenerationConfig,
  type EarlyStopping,
  type GenerationConfig,
  type GenerationConfigSources,
  type GenerationOptions,
} from './config.js';
export {
  generate,
  streamTokens,
  type GenerateOptions,
  type GeneratedSequence,
  type GenerationResult,
  type TokenEvent,
} from './search.js';
export { TextStreamer, streamText, type Decode } from './streamer.js';
export { seededRandom, type Random } from './random.js';
