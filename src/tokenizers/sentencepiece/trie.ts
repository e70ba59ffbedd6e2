/**
 * A byte trie for vocabulary lookups in the hot loop, as a double array (the layout darts-clone uses
 * inside SentencePiece): the child of state s along byte c is t = base[s] + c when check[t] === s.
 * Two reads per byte, no per-node objects, and children of a state sit next to each other in memory.
 */

export interface TrieEntry {
  bytes: Uint8Array;
  value: number;
}

const FREE = -1;
const ROOT_MARK = -2;
/** Key groups up to this size are ordered by insertion sort; larger ones by counting sort. */
const SMALL_GROUP = 24;

export class ByteTrie {
  /** Value stored at each state (-1: no key ends there). Indexed by the states `next` returns. */
  values: Int32Array;
  private base: Int32Array;
  private check: Int32Array;
  // Build-time only: a doubly linked list of free cells, so the search for a base skips occupied ones.
  private nextFree: Int32Array;
  private prevFree: Int32Array;
  private firstFree = 0;
  private lastFree: number;
  /**
   * Where the search for a state with several children starts. It only moves forward: scanning the
   * old holes again for every such state made building quadratic; single-child states fill them.
   */
  private multiFrom = 0;
  // Build-time only: every key's bytes packed in one array (far fewer cache misses than one array per key).
  private data: Uint8Array;
  private starts: Int32Array;
  private lengths: Int32Array;
  private entryValues: Int32Array;
  private readonly counts = new Int32Array(257);
  private scratch: Int32Array;

  /** Entries need not be sorted; of equal byte strings the last one's value is kept. */
  constructor(entries: Iterable<TrieEntry>) {
    const list = [...entries];
    let total = 0;
    for (const k of list) total += k.bytes.length;
    this.data = new Uint8Array(total);
    this.starts = new Int32Array(list.length);
    this.lengths = new Int32Array(list.length);
    this.entryValues = new Int32Array(list.length);
    let at = 0;
    list.forEach((k, i) => {
      this.data.set(k.bytes, at);
      this.starts[i] = at;
      this.lengths[i] = k.bytes.length;
      this.entryValues[i] = k.value;
      at += k.bytes.length;
    });
    const order = Int32Array.from(list, (_, i) => i);
    this.scratch = new Int32Array(list.length);
    const capacity = total + 512;
    this.base = new Int32Array(capacity);
    this.check = new Int32Array(capacity).fill(FREE);
    this.values = new Int32Array(capacity).fill(-1);
    this.nextFree = new Int32Array(capacity);
    this.prevFree = new Int32Array(capacity);
    for (let i = 0; i < capacity; i++) {
      this.nextFree[i] = i + 1;
      this.prevFree[i] = i - 1;
    }
    this.lastFree = capacity - 1;
    this.occupy(0, ROOT_MARK);
    this.build(order, 0, order.length, 0, 0);
    // Exactly the room for base + byte never to read past the arrays.
    const size = this.maxUsed() + 257;
    this.grow(size);
    this.base = this.base.slice(0, size);
    this.check = this.check.slice(0, size);
    this.values = this.values.slice(0, size);
    this.nextFree = new Int32Array(0);
    this.prevFree = new Int32Array(0);
    this.scratch = new Int32Array(0);
    this.data = new Uint8Array(0);
  }

  /** The child of `state` along `byte`, or -1. State 0 is the root. */
  next(state: number, byte: number): number {
    const t = (this.base[state] as number) + byte;
    return this.check[t] === state ? t : -1;
  }

  private maxUsed(): number {
    let m = this.check.length - 1;
    while (m > 0 && this.check[m] === FREE) m--;
    let maxBase = 0;
    for (let i = 0; i <= m; i++) if (this.check[i] !== FREE) maxBase = Math.max(maxBase, this.base[i] as number);
    return Math.max(m, maxBase);
  }

  private grow(size: number): void {
    const old = this.check.length;
    if (size <= old) return;
    const cap = Math.max(size, old * 2);
    const extend = (a: Int32Array, fill: number): Int32Array => {
      const b = new Int32Array(cap).fill(fill);
      b.set(a);
      return b;
    };
    this.base = extend(this.base, 0);
    this.check = extend(this.check, FREE);
    this.values = extend(this.values, -1);
    this.nextFree = extend(this.nextFree, 0);
    this.prevFree = extend(this.prevFree, 0);
    for (let i = old; i < cap; i++) {
      this.nextFree[i] = i + 1;
      this.prevFree[i] = i - 1;
    }
    // The old tail already points at `old` (its next was one past the end); link back to it.
    this.prevFree[old] = this.lastFree;
    if (this.lastFree < 0) this.firstFree = old;
    this.lastFree = cap - 1;
  }

  private occupy(cell: number, parent: number): void {
    this.check[cell] = parent;
    const p = this.prevFree[cell] as number;
    const n = this.nextFree[cell] as number;
    if (p >= 0) this.nextFree[p] = n;
    if (n < this.prevFree.length) this.prevFree[n] = p;
    if (cell === this.firstFree) this.firstFree = n;
    if (cell === this.lastFree) this.lastFree = p;
  }

  /** A base at which every label lands on a free cell; `labels` ascending, `count` of them. */
  private findBase(labels: Int32Array | number[], count: number): number {
    const first = labels[0] as number;
    const several = count > 1;
    let q = this.firstFree;
    if (several && this.multiFrom > q) {
      q = this.multiFrom;
      while (q < this.check.length && this.check[q] !== FREE) q++;
    }
    for (; ; q = this.nextFree[q] as number) {
      this.grow(q + 257);
      const b = q - first;
      if (b < 0) continue;
      let fits = true;
      for (let k = 1; k < count; k++) {
        if (this.check[b + (labels[k] as number)] !== FREE) {
          fits = false;
          break;
        }
      }
      if (fits) {
        if (several) this.multiFrom = q;
        return b;
      }
    }
  }

  /** Adds one child along `byte` below `state` and returns it. */
  private addChild(state: number, byte: number): number {
    const b = this.findBase([byte], 1);
    this.base[state] = b;
    this.occupy(b + byte, state);
    return b + byte;
  }

  /**
   * Places the keys order[lo..hi), which share their first `depth` bytes, below `state`: an MSD radix
   * partition of the keys by their next byte, so no global sort is needed.
   */
  private build(order: Int32Array, lo: number, hi: number, depth: number, state: number): void {
    const { data, starts, lengths } = this;
    for (;;) {
      // Keys that end here leave the group; of duplicates the last entry wins.
      let w = lo;
      let ending = -1;
      for (let i = lo; i < hi; i++) {
        const e = order[i] as number;
        if (lengths[e] === depth) ending = Math.max(ending, e);
        else order[w++] = e;
      }
      if (ending >= 0) this.values[state] = this.entryValues[ending] as number;
      hi = w;
      if (lo >= hi) return;
      if (hi - lo === 1) {
        // One key left: the rest of it is a chain of single children.
        const e = order[lo] as number;
        const end = (starts[e] as number) + (lengths[e] as number);
        for (let p = (starts[e] as number) + depth; p < end; p++) state = this.addChild(state, data[p] as number);
        this.values[state] = this.entryValues[e] as number;
        return;
      }
      this.sortByByte(order, lo, hi, depth);
      const first = data[(starts[order[lo] as number] as number) + depth] as number;
      if (data[(starts[order[hi - 1] as number] as number) + depth] !== first) break;
      state = this.addChild(state, first);
      depth++;
    }
    const labels: number[] = [];
    const bounds: number[] = [];
    for (let i = lo; i < hi; ) {
      const c = data[(starts[order[i] as number] as number) + depth] as number;
      let j = i + 1;
      while (j < hi && data[(starts[order[j] as number] as number) + depth] === c) j++;
      labels.push(c);
      bounds.push(i, j);
      i = j;
    }
    const b = this.findBase(labels, labels.length);
    this.base[state] = b;
    for (const c of labels) this.occupy(b + c, state);
    for (let k = 0; k < labels.length; k++) {
      this.build(order, bounds[2 * k] as number, bounds[2 * k + 1] as number, depth + 1, b + (labels[k] as number));
    }
  }

  /** Orders order[lo..hi) by the byte at `depth` (every key there is longer than `depth`). */
  private sortByByte(order: Int32Array, lo: number, hi: number, depth: number): void {
    const { data, starts } = this;
    if (hi - lo <= SMALL_GROUP) {
      for (let i = lo + 1; i < hi; i++) {
        const e = order[i] as number;
        const c = data[(starts[e] as number) + depth] as number;
        let j = i - 1;
        while (j >= lo && (data[(starts[order[j] as number] as number) + depth] as number) > c) {
          order[j + 1] = order[j] as number;
          j--;
        }
        order[j + 1] = e;
      }
      return;
    }
    const counts = this.counts.fill(0);
    for (let i = lo; i < hi; i++) counts[(data[(starts[order[i] as number] as number) + depth] as number) + 1] += 1;
    for (let c = 1; c <= 256; c++) counts[c] += counts[c - 1] as number;
    const tmp = this.scratch;
    for (let i = lo; i < hi; i++) {
      const c = data[(starts[order[i] as number] as number) + depth] as number;
      tmp[lo + (counts[c] as number)] = order[i] as number;
      counts[c] += 1;
    }
    order.set(tmp.subarray(lo, hi), lo);
  }
}
