/** transformers 4.37 `PreTrainedTokenizer._decode`, around each model's `convert_tokens_to_string`. */

/** What `_decode` asks of a tokenizer. */
export interface DecodeSource {
  /** `convert_ids_to_tokens` of one id. */
  tokenOf(id: number): string;
  /** `all_special_ids`: what `skip_special_tokens` drops. */
  readonly specialIds: ReadonlySet<number>;
  /** Tokens decoded on their own rather than through `convertTokensToString` (see `legacyAddedTokens`). */
  readonly legacyAdded: ReadonlySet<string>;
  convertTokensToString(tokens: string[]): string;
}

/**
 * `legacy_added_tokens`: added tokens that are not special, and additional special tokens whose id lies past
 * the model's own vocabulary.
 */
export function legacyAddedTokens(
  addedContents: Iterable<string>,
  specialTokens: ReadonlySet<string>,
  additionalSpecialTokens: Iterable<string>,
  idOf: (token: string) => number,
  vocabSize: number,
): Set<string> {
  const legacy = new Set<string>();
  for (const t of addedContents) if (!specialTokens.has(t)) legacy.add(t);
  for (const t of additionalSpecialTokens) if (idOf(t) >= vocabSize) legacy.add(t);
  return legacy;
}

/** `_decode` with `spaces_between_special_tokens=True`: runs of ordinary tokens and legacy added tokens, joined by spaces. */
export function decodeIds(source: DecodeSource, ids: readonly number[], skipSpecialTokens: boolean, cleanUp: boolean): string {
  const subTexts: string[] = [];
  let run: string[] = [];
  for (const id of ids) {
    if (skipSpecialTokens && source.specialIds.has(id)) continue;
    const token = source.tokenOf(id);
    if (!source.legacyAdded.has(token)) {
      run.push(token);
      continue;
    }
    if (run.length > 0) {
      const text = source.convertTokensToString(run);
      if (text.length > 0) subTexts.push(text);
      run = [];
    }
    subTexts.push(token);
  }
  if (run.length > 0) subTexts.push(source.convertTokensToString(run));
  const text = subTexts.join(' ');
  return cleanUp ? cleanUpTokenization(text) : text;
}

const CLEANUPS: ReadonlyArray<readonly [string, string]> = [
  [' .', '.'],
  [' ?', '?'],
  [' !', '!'],
  [' ,', ','],
  [" ' ", "'"],
  [" n't", "n't"],
  [" 'm", "'m"],
  [" 's", "'s"],
  [" 've", "'ve"],
  [" 're", "'re"],
];

/** TUB `clean_up_tokenization`, English-centric but applied by default: the replacements, in this order. */
export function cleanUpTokenization(text: string): string {
  let out = text;
  for (const [from, to] of CLEANUPS) if (out.includes(from)) out = out.replaceAll(from, to);
  return out;
}
