/**
 * sacremoses 0.1.1's French non-breaking prefixes (`data/nonbreaking_prefixes/nonbreaking_prefix.fr`, as
 * loaded by `NonbreakingPrefixes.words("fr")`: stripped, comments and blank lines dropped). A word in this list
 * keeps its final period (`M.`, `etc.`) when MosesTokenizer would otherwise split it off.
 *
 * `a` is absent on purpose: the source file has it commented out. No French entry carries `#NUMERIC_ONLY#`,
 * so the tokenizer has no numeric-only branch. test/tokenizers/moses/charclasses.test.ts checks this list
 * against the reference copy of the file.
 */

/** Single letters: initials, and lower-case letters, which the file says end no French word. */
const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZbcdefghijklmnopqrstuvwxyz';

const ABBREVIATIONS = [
  'A.C.N', 'A.M', 'art', 'ann', 'apr', 'av', 'auj', 'lib', 'B.P', 'boul', 'ca', 'c.-à-d', 'cf', 'ch.-l',
  'chap', 'contr', 'C.P.I', 'C.Q.F.D', 'C.N', 'C.N.S', 'C.S', 'dir', 'éd', 'e.g', 'env', 'al', 'etc', 'E.V',
  'ex', 'fasc', 'fém', 'fig', 'fr', 'hab', 'ibid', 'id', 'i.e', 'inf', 'LL.AA', 'LL.AA.II', 'LL.AA.RR',
  'LL.AA.SS', 'L.D', 'LL.EE', 'LL.MM', 'LL.MM.II.RR', 'loc.cit', 'masc', 'MM', 'ms', 'N.B', 'N.D.A',
  'N.D.L.R', 'N.D.T', 'n/réf', 'NN.SS', 'N.S', 'N.D', 'N.P.A.I', 'p.c.c', 'pl', 'pp', 'p.ex', 'p.j', 'P.S',
  'R.A.S', 'R.-V', 'R.P', 'R.I.P', 'SS', 'S.S', 'S.A', 'S.A.I', 'S.A.R', 'S.A.S', 'S.E', 'sec', 'sect',
  'sing', 'S.M', 'S.M.I.R', 'sq', 'sqq', 'suiv', 'sup', 'suppl', 'tél', 'T.S.V.P', 'vb', 'vol', 'vs', 'X.O',
  'Z.I',
] as const;

/** In file order, as sacremoses holds them. */
export const FRENCH_NONBREAKING_PREFIXES: readonly string[] = [...LETTERS, ...ABBREVIATIONS];

export const FRENCH_NONBREAKING_PREFIX_SET: ReadonlySet<string> = new Set(FRENCH_NONBREAKING_PREFIXES);
