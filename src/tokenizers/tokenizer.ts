/**
 * What every tokenizer offers the rest of tfhf: the slow-tokenizer semantics of transformers 4.37
 * (`tokenizer(text)`, `tokenize`, `convert_ids_to_tokens`, `decode`), nothing model-specific.
 */

export interface EncodeOptions {
  /** transformers' `add_special_tokens` (default true): T5 appends `</s>`, FlauBERT frames `<s> … </s>`. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** transformers' `skip_special_tokens` (default false). */
  skipSpecialTokens?: boolean;
  /** transformers' `clean_up_tokenization_spaces` (default: the tokenizer's own setting). */
  cleanUpTokenizationSpaces?: boolean;
}

export interface Encoding {
  ids: number[];
  tokens: string[];
  /** 0 for every token of a single sequence (FlauBERT returns them; T5 does not use them). */
  tokenTypeIds?: number[];
}

export interface SpecialTokenIds {
  pad: number;
  eos: number;
  unk: number;
  bos?: number;
  mask?: number;
}

export interface Tokenizer {
  /** `t5` (SentencePiece Unigram) or `flaubert` (Moses + BPE). */
  readonly kind: 't5' | 'flaubert';
  /** len(tokenizer): base vocabulary plus added tokens; valid ids are 0 … size-1. */
  readonly size: number;
  readonly special: SpecialTokenIds;
  /** The mask token string, where the model has one (`<special1>` for FlauBERT). */
  readonly maskToken?: string;
  /** Strings of the special tokens (`all_special_tokens`). */
  readonly specialTokens: readonly string[];
  encode(text: string, options?: EncodeOptions): Encoding;
  /** `tokenizer.tokenize(text)`: tokens without special tokens added. */
  tokenize(text: string): string[];
  idToToken(id: number): string | undefined;
  tokenToId(token: string): number | undefined;
  decode(ids: readonly number[], options?: DecodeOptions): string;
}
