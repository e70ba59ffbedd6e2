/**
 * A restricted unpickler: a pickle VM (protocols 0–5) that never imports or calls anything by itself.
 * Every global a pickle names must be in the caller's allowlist, and is refused when it is named
 * (GLOBAL / STACK_GLOBAL / INST), before any REDUCE could call it; persistent ids go to the caller.
 * Python values become a small typed union; handlers turn allowed calls into values of their own.
 */
import { FormatError } from '../errors.js';

/** A Python tuple: distinct from a list, which is a plain (mutable) array. */
export class PyTuple {
  constructor(readonly items: readonly PyValue[]) {}
}

/** An allowed global (class or function); calling it goes through its handler. */
export class PyGlobal {
  constructor(
    readonly name: string,
    readonly handler: GlobalHandler,
  ) {}
}

/** Base of the opaque values that handlers build (tensors, storages, …). */
export abstract class PyObject {}

/** None, bool, int (bigint beyond 2^53) or float, str, bytes, list, tuple, dict, set, global, handler-built object. */
export type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PyValue[]
  | PyTuple
  | Map<PyValue, PyValue>
  | Set<PyValue>
  | PyGlobal
  | PyObject;

export interface GlobalHandler {
  /** The value of `global(*args)` (REDUCE, NEWOBJ, INST, OBJ); absent for globals that are only markers. */
  call?(args: readonly PyValue[]): PyValue;
  /** BUILD (`__setstate__`) on a value this global returned; returns a replacement value or nothing. */
  build?(target: PyValue, state: PyValue): PyValue | void;
}

export interface UnpickleOptions {
  /** Named in messages. */
  file: string;
  /** "module.name" → handler; every other global is refused. */
  globals: ReadonlyMap<string, GlobalHandler>;
  /** Resolves BINPERSID / PERSID ids; without it, persistent ids are refused. */
  persistentLoad?: (pid: PyValue) => PyValue;
  /** What the pickle is expected to hold, for the refusal message. */
  expected?: string;
}

/** The pickle stops before its STOP opcode: callers reading a file in pieces may retry with more data. */
export class PickleTruncatedError extends FormatError {}

// Resource caps: a state dict of 100k tensors stays far below each of them.
const MAX_MEMO = 1 << 22;
const MAX_STACK = 1 << 22;
const MAX_MARK_DEPTH = 1000;
const MAX_OPS = 1 << 28;
const MAX_INT_BYTES = 1024;

const utf8 = new TextDecoder('utf-8');

/** Safe integers as numbers, the rest as bigint. */
function intValue(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Names from untrusted input, made safe to print. */
function printable(s: string): string {
  const short = s.length > 200 ? `${s.slice(0, 200)}…` : s;
  return short.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** A value's Python type with its article, for messages ("a dict", "an int", "None"). */
export function describe(v: PyValue | undefined): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'None';
  if (Array.isArray(v)) return 'a list';
  if (v instanceof PyTuple) return 'a tuple';
  if (v instanceof Map) return 'a dict';
  if (v instanceof Set) return 'a set';
  if (v instanceof Uint8Array) return 'bytes';
  if (v instanceof PyGlobal) return `the global ${v.name}`;
  if (v instanceof PyObject) return `a ${v.constructor.name} object`;
  if (typeof v === 'number') return Number.isInteger(v) ? 'an int' : 'a float';
  return typeof v === 'string' ? 'a str' : typeof v === 'boolean' ? 'a bool' : 'an int';
}

/** Unpickles the single pickle at the start of `data`. */
export function unpickle(data: Uint8Array, options: UnpickleOptions): PyValue {
  return unpickleAt(data, 0, options).value;
}

/** Unpickles the pickle starting at `start`; `end` is the offset just past its STOP opcode. */
export function unpickleAt(data: Uint8Array, start: number, options: UnpickleOptions): { value: PyValue; end: number } {
  const { file } = options;
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const stack: PyValue[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PyValue>();
  // Which handler built an object, so BUILD can be routed to it (and refused for plain containers).
  const origin = new WeakMap<object, GlobalHandler>();
  let pos = start;
  let opStart = start;

  const fail = (msg: string): FormatError => new FormatError(`${file}: ${msg} (pickle offset ${opStart})`);
  const need = (n: number): number => {
    if (n > data.length - pos) {
      throw new PickleTruncatedError(`${file}: pickle data ends unexpectedly at offset ${data.length}`, {
        hint: 'the file is truncated or corrupt; download it again',
      });
    }
    const at = pos;
    pos += n;
    return at;
  };
  const bytes = (n: number | bigint): Uint8Array => {
    if (BigInt(n) > BigInt(data.length - pos)) need(data.length - pos + 1);
    const at = need(Number(n));
    return data.slice(at, at + Number(n));
  };
  const rawLine = (): Uint8Array => {
    const nl = data.indexOf(0x0a, pos);
    if (nl < 0) need(data.length - pos + 1);
    const raw = data.subarray(pos, nl);
    pos = nl + 1;
    return raw;
  };
  const line = (): string => latin1String(rawLine());
  const u8 = (): number => dv.getUint8(need(1));
  const u16 = (): number => dv.getUint16(need(2), true);
  const u32 = (): number => dv.getUint32(need(4), true);
  const u64 = (): bigint => dv.getBigUint64(need(8), true);

  const push = (v: PyValue): void => {
    if (stack.length >= MAX_STACK) throw fail('pickle stack exceeds its size limit');
    stack.push(v);
  };
  const floor = (): number => marks[marks.length - 1] ?? 0;
  const pop = (): PyValue => {
    if (stack.length <= floor()) throw fail('pickle stack underflow');
    return stack.pop() as PyValue;
  };
  const top = (): PyValue => {
    if (stack.length <= floor()) throw fail('pickle stack underflow');
    return stack[stack.length - 1] as PyValue;
  };
  const popMark = (): PyValue[] => {
    const m = marks.pop();
    if (m === undefined) throw fail('pickle MARK missing');
    return stack.splice(m);
  };
  const memoPut = (key: number, v: PyValue): void => {
    if (memo.size >= MAX_MEMO && !memo.has(key)) throw fail('pickle memo exceeds its size limit');
    memo.set(key, v);
  };
  const memoGet = (key: number): void => {
    if (!memo.has(key)) throw fail(`pickle memo has no entry ${key}`);
    push(memo.get(key) as PyValue);
  };
  const decimal = (text: string): bigint => {
    const t = text.trim();
    if (t.length > MAX_INT_BYTES || !/^[+-]?\d+$/.test(t)) throw fail(`bad integer literal '${printable(t)}'`);
    return BigInt(t);
  };
  const longLE = (b: Uint8Array): number | bigint => {
    if (b.length > MAX_INT_BYTES) throw fail('integer too large');
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i] as number);
    if (b.length > 0 && (b[b.length - 1] as number) & 0x80) v -= 1n << BigInt(8 * b.length);
    return intValue(v);
  };
  const resolve = (module: string, name: string): PyGlobal => {
    const full = `${module}.${name}`;
    const handler = options.globals.get(full);
    if (!handler) {
      const expected = options.expected ?? 'a PyTorch state dict';
      throw new FormatError(
        `refusing to load ${file}: its pickle references the global '${printable(full)}', ` +
          `which ${expected} never needs (the file may be malicious)`,
        { hint: 'only load checkpoints from sources you trust; prefer model.safetensors' },
      );
    }
    return new PyGlobal(full, handler);
  };
  const call = (callable: PyValue, args: PyValue): PyValue => {
    if (!(callable instanceof PyGlobal)) throw fail(`cannot call ${describe(callable)}`);
    if (!(args instanceof PyTuple)) throw fail(`arguments of ${callable.name} are ${describe(args)}, not a tuple`);
    if (!callable.handler.call) throw fail(`the global ${callable.name} is not callable`);
    const result = callable.handler.call(args.items);
    if (typeof result === 'object' && result !== null) origin.set(result, callable.handler);
    return result;
  };
  const setItems = (target: PyValue, items: readonly PyValue[]): void => {
    if (!(target instanceof Map)) throw fail(`cannot set items on ${describe(target)}`);
    if (items.length % 2) throw fail('odd number of dict items');
    for (let i = 0; i < items.length; i += 2) target.set(items[i] as PyValue, items[i + 1] as PyValue);
  };
  const append = (target: PyValue, items: readonly PyValue[]): void => {
    if (!Array.isArray(target)) throw fail(`cannot append to ${describe(target)}`);
    if (target.length + items.length > MAX_STACK) throw fail('list exceeds its size limit');
    for (const item of items) target.push(item);
  };
  const persistent = (pid: PyValue): PyValue => {
    if (!options.persistentLoad) throw fail('unexpected persistent id');
    return options.persistentLoad(pid);
  };
  const escaped = (body: string): string =>
    // Protocol-0 STRING bodies are Python bytes reprs; only the escapes repr produces are needed.
    body.replace(/\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)/g, (_, e: string) => {
      if (e[0] === 'x') return String.fromCharCode(parseInt(e.slice(1), 16));
      if (/^[0-7]/.test(e)) return String.fromCharCode(parseInt(e, 8) & 0xff);
      return ({ n: '\n', r: '\r', t: '\t', '\\': '\\', "'": "'", '"': '"' } as Record<string, string>)[e] ?? `\\${e}`;
    });

  for (let ops = 0; ; ops++) {
    if (ops >= MAX_OPS) throw fail('pickle exceeds the operation limit');
    opStart = pos;
    const op = u8();
    switch (op) {
      case 0x80: {
        const proto = u8();
        if (proto > 5) throw fail(`unsupported pickle protocol ${proto}`);
        break;
      }
      case 0x95: // FRAME: framing is only a read-ahead hint
        u64();
        break;
      case 0x2e: // STOP
        return { value: pop(), end: pos };
      case 0x28: // MARK
        if (marks.length >= MAX_MARK_DEPTH) throw fail('pickle nesting exceeds its depth limit');
        marks.push(stack.length);
        break;
      case 0x30: // POP
        if (stack.length > floor()) stack.pop();
        else popMark();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        push(top());
        break;
      case 0x7d: // EMPTY_DICT
        push(new Map());
        break;
      case 0x5d: // EMPTY_LIST
        push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        push(new PyTuple([]));
        break;
      case 0x8f: // EMPTY_SET
        push(new Set());
        break;
      case 0x64: {
        // DICT
        const d = new Map<PyValue, PyValue>();
        setItems(d, popMark());
        push(d);
        break;
      }
      case 0x6c: // LIST
        push(popMark());
        break;
      case 0x74: // TUPLE
        push(new PyTuple(popMark()));
        break;
      case 0x85:
      case 0x86:
      case 0x87: {
        // TUPLE1..3
        const n = op - 0x84;
        const items: PyValue[] = [];
        for (let i = 0; i < n; i++) items.unshift(pop());
        push(new PyTuple(items));
        break;
      }
      case 0x91: // FROZENSET
        push(new Set(popMark()));
        break;
      case 0x71: // BINPUT
        memoPut(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memoPut(u32(), top());
        break;
      case 0x70: // PUT
        memoPut(Number(decimal(line())), top());
        break;
      case 0x94: // MEMOIZE
        memoPut(memo.size, top());
        break;
      case 0x68: // BINGET
        memoGet(u8());
        break;
      case 0x6a: // LONG_BINGET
        memoGet(u32());
        break;
      case 0x67: // GET
        memoGet(Number(decimal(line())));
        break;
      case 0x63: {
        // GLOBAL
        const module = utf8.decode(rawLine());
        push(resolve(module, utf8.decode(rawLine())));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') throw fail('STACK_GLOBAL needs two strings');
        push(resolve(module, name));
        break;
      }
      case 0x69: {
        // INST
        const module = utf8.decode(rawLine());
        const cls = resolve(module, utf8.decode(rawLine()));
        push(call(cls, new PyTuple(popMark())));
        break;
      }
      case 0x6f: {
        // OBJ
        const [cls = null, ...args] = popMark();
        push(call(cls, new PyTuple(args)));
        break;
      }
      case 0x4a: // BININT
        push(dv.getInt32(need(4), true));
        break;
      case 0x4b: // BININT1
        push(u8());
        break;
      case 0x4d: // BININT2
        push(u16());
        break;
      case 0x49: {
        // INT (protocol 0 also spells booleans this way)
        const text = line();
        push(text === '00' ? false : text === '01' ? true : intValue(decimal(text)));
        break;
      }
      case 0x4c: // LONG
        push(intValue(decimal(line().replace(/L$/, ''))));
        break;
      case 0x8a: // LONG1
        push(longLE(bytes(u8())));
        break;
      case 0x8b: {
        // LONG4
        const n = dv.getInt32(need(4), true);
        if (n < 0) throw fail('negative LONG4 length');
        if (n > MAX_INT_BYTES) throw fail('integer too large');
        push(longLE(bytes(n)));
        break;
      }
      case 0x47: // BINFLOAT (big-endian, unlike everything else)
        push(dv.getFloat64(need(8), false));
        break;
      case 0x46: {
        // FLOAT
        const text = line().trim().toLowerCase();
        const special: Record<string, number> = { inf: Infinity, '+inf': Infinity, '-inf': -Infinity, nan: NaN };
        const v = special[text] ?? Number(text);
        if (Number.isNaN(v) && text !== 'nan') throw fail(`bad float literal '${printable(text)}'`);
        push(v);
        break;
      }
      case 0x4e: // NONE
        push(null);
        break;
      case 0x88: // NEWTRUE
        push(true);
        break;
      case 0x89: // NEWFALSE
        push(false);
        break;
      case 0x58: // BINUNICODE
        push(utf8.decode(bytes(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        push(utf8.decode(bytes(u8())));
        break;
      case 0x8d: // BINUNICODE8
        push(utf8.decode(bytes(u64())));
        break;
      case 0x56: // UNICODE (raw-unicode-escape)
        push(
          line().replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_, a?: string, b?: string) =>
            String.fromCodePoint(parseInt(a ?? b ?? '0', 16)),
          ),
        );
        break;
      case 0x54: {
        // BINSTRING: Python 2 str, decoded as torch.load does (utf-8)
        const n = dv.getInt32(need(4), true);
        if (n < 0) throw fail('negative BINSTRING length');
        push(utf8.decode(bytes(n)));
        break;
      }
      case 0x55: // SHORT_BINSTRING
        push(utf8.decode(bytes(u8())));
        break;
      case 0x53: {
        // STRING
        const text = line().trim();
        const q = text[0];
        if (text.length < 2 || (q !== "'" && q !== '"') || text[text.length - 1] !== q) {
          throw fail('STRING opcode argument is not quoted');
        }
        push(utf8.decode(latin1Bytes(escaped(text.slice(1, -1)))));
        break;
      }
      case 0x42: // BINBYTES
        push(bytes(u32()));
        break;
      case 0x43: // SHORT_BINBYTES
        push(bytes(u8()));
        break;
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        push(bytes(u64()));
        break;
      case 0x52: {
        // REDUCE
        const args = pop();
        push(call(pop(), args));
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = pop();
        push(call(pop(), args));
        break;
      }
      case 0x92: {
        // NEWOBJ_EX
        const kwargs = pop();
        const args = pop();
        if (!(kwargs instanceof Map) || kwargs.size > 0) throw fail('keyword arguments are not supported');
        push(call(pop(), args));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        const target = top();
        const handler = typeof target === 'object' && target !== null ? origin.get(target) : undefined;
        if (!handler?.build) throw fail(`cannot set the state of ${describe(target)}`);
        const replaced = handler.build(target, state);
        if (replaced !== undefined) stack[stack.length - 1] = replaced;
        break;
      }
      case 0x73: {
        // SETITEM
        const value = pop();
        const key = pop();
        setItems(top(), [key, value]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x61: {
        // APPEND
        const value = pop();
        append(top(), [value]);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        append(top(), items);
        break;
      }
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        const target = top();
        if (!(target instanceof Set)) throw fail(`cannot add items to ${describe(target)}`);
        for (const item of items) target.add(item);
        break;
      }
      case 0x51: // BINPERSID
        push(persistent(pop()));
        break;
      case 0x50: // PERSID
        push(persistent(line()));
        break;
      default:
        // EXT1/2/4 (extension registry) and out-of-band buffers have no place in a checkpoint.
        throw fail(`unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')}`);
    }
  }
}

/** Byte-per-character strings (TextDecoder's 'latin1' is really windows-1252). */
function latin1String(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return s;
}

function latin1Bytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}
