/**
 * Unigram segmentation exactly as SentencePiece 0.1.97 `unigram::Model::EncodeOptimized`: a Viterbi pass
 * over the bytes of the normalised string, moving one character at a time, with an unknown node for every
 * character that no piece of exactly its length covers. The C++ mixes float and double arithmetic; the
 * same roundings are reproduced here because they decide near-ties.
 */
import { FormatError } from '../../errors.js';
import { type ModelPiece, PieceType } from './proto.js';
import { ByteTrie } from './trie.js';
import { oneCharLen } from './utf8.js';

/** `kUnkPenalty`: an unknown character scores this much below the worst NORMAL piece. */
const UNK_PENALTY = 10;
/** `FLT_MIN`, the floor of `max_score` (the smallest positive normal float, not the most negative one). */
const FLT_MIN = 1.1754943508222875e-38;

export class UnigramModel {
  readonly unkId: number;
  private readonly trie: ByteTrie;
  /** Per trie state: the piece ending there and its score; NaN where none may be used (or UNUSED). */
  private readonly stateScore: Float64Array;
  private readonly stateId: Int32Array;
  private readonly unkScore: number;
  private bestId = new Int32Array(256);
  private bestStart = new Int32Array(256);
  private bestScore = new Float32Array(256);
  /** Segmentation of the last `encode` call, in order: piece i covers bytes [starts[i], ends[i]). */
  starts = new Int32Array(256);
  ends = new Int32Array(256);
  ids = new Int32Array(256);

  constructor(pieces: readonly ModelPiece[], what = 'spiece.model') {
    let unkId = -1;
    let minScore = Number.MAX_VALUE;
    let maxScore = FLT_MIN;
    const matchable: { bytes: Uint8Array; value: number }[] = [];
    pieces.forEach((p, id) => {
      const score = Math.fround(p.score);
      if (p.type === PieceType.unknown) {
        if (unkId >= 0) throw new FormatError(`${what}: more than one unknown piece (ids ${unkId} and ${id})`);
        unkId = id;
      }
      if (p.type === PieceType.normal) {
        minScore = Math.min(minScore, score);
        maxScore = Math.max(maxScore, score);
      }
      // CONTROL, UNKNOWN and BYTE pieces are never matched against text.
      if (p.type === PieceType.normal || p.type === PieceType.userDefined || p.type === PieceType.unused) {
        matchable.push({ bytes: p.bytes, value: id });
      }
    });
    if (unkId < 0) throw new FormatError(`${what}: no unknown piece`, { hint: 'a SentencePiece model needs one UNKNOWN piece' });
    this.unkId = unkId;
    this.trie = new ByteTrie(matchable);
    // float - float in C++; with no NORMAL piece min_score stays FLT_MAX as there.
    this.unkScore = Math.fround((minScore === Number.MAX_VALUE ? 3.4028234663852886e38 : minScore) - UNK_PENALTY);

    const values = this.trie.values;
    this.stateScore = new Float64Array(values.length).fill(NaN);
    this.stateId = new Int32Array(values.length).fill(-1);
    for (let state = 0; state < values.length; state++) {
      const id = values[state] as number;
      if (id < 0) continue;
      const p = pieces[id] as ModelPiece;
      // An UNUSED piece is found by the trie walk but then skipped.
      if (p.type === PieceType.unused) continue;
      this.stateId[state] = id;
      // A user-defined piece gets length * max_score (float) - 0.1 (double): about -0.1, beating any split.
      this.stateScore[state] = p.type === PieceType.userDefined ? Math.fround(p.bytes.length * maxScore) - 0.1 : Math.fround(p.score);
    }
  }

  private reserve(n: number): void {
    if (this.bestId.length > n) return;
    const size = Math.max(n + 1, this.bestId.length * 2);
    this.bestId = new Int32Array(size);
    this.bestStart = new Int32Array(size);
    this.bestScore = new Float32Array(size);
    this.starts = new Int32Array(size);
    this.ends = new Int32Array(size);
    this.ids = new Int32Array(size);
  }

  /** Segments `s[0..n)`; returns the number of pieces, left in `starts` / `ends` / `ids`. */
  encode(s: Uint8Array, n: number): number {
    if (n === 0) return 0;
    this.reserve(n);
    const { bestId, bestStart, bestScore, trie, stateScore, stateId } = this;
    bestStart.fill(-1, 0, n + 1);
    bestScore[0] = 0;
    const unkScore = this.unkScore;
    const unkId = this.unkId;

    let start = 0;
    while (start < n) {
      const here = bestScore[start] as number;
      const mblen = Math.min(oneCharLen(s[start] as number), n - start);
      let hasSingle = false;
      let node = 0;
      for (let k = start; k < n; ) {
        node = trie.next(node, s[k] as number);
        if (node < 0) break;
        k++;
        const score = stateScore[node] as number;
        if (score !== score) continue;
        // double + float is a double; the node keeps it as a float.
        const candidate = score + here;
        if (bestStart[k] === -1 || candidate > (bestScore[k] as number)) {
          bestScore[k] = candidate;
          bestStart[k] = start;
          bestId[k] = stateId[node] as number;
        }
        if (k - start === mblen) hasSingle = true;
      }
      if (!hasSingle) {
        const e = start + mblen;
        const candidate = Math.fround(unkScore + here);
        if (bestStart[e] === -1 || candidate > (bestScore[e] as number)) {
          bestScore[e] = candidate;
          bestStart[e] = start;
          bestId[e] = unkId;
        }
      }
      start += mblen;
    }

    let count = 0;
    for (let e = n; e > 0; e = bestStart[e] as number) count++;
    const { starts, ends, ids } = this;
    let i = count;
    for (let e = n; e > 0; ) {
      const b = bestStart[e] as number;
      i--;
      starts[i] = b;
      ends[i] = e;
      ids[i] = bestId[e] as number;
      e = b;
    }
    return count;
  }
}
