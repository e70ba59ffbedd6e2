import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FormatError } from '../../src/errors.js';
import {
  PickleTruncatedError,
  PyGlobal,
  PyTuple,
  unpickle,
  unpickleAt,
  type GlobalHandler,
  type PyValue,
} from '../../src/formats/pickle.js';

/** Pickle streams are written as byte-per-character strings, e.g. '\x80\x02K\x05.'. */
const bytes = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));
const le = (n: number, width: number): string => {
  let s = '';
  for (let i = 0; i < width; i++) s += String.fromCharCode(Math.floor(n / 2 ** (8 * i)) & 0xff);
  return s;
};
/** BINUNICODE of `s` (UTF-8 bytes). */
const uni = (s: string): string => {
  const b = new TextEncoder().encode(s);
  return `X${le(b.length, 4)}${String.fromCharCode(...b)}`;
};

const none = new Map<string, GlobalHandler>();
const load = (s: string, globals: ReadonlyMap<string, GlobalHandler> = none): PyValue =>
  unpickle(bytes(s), { file: 'test.pkl', globals });

test('integers of every encoding', () => {
  assert.equal(load('\x80\x02K\xff.'), 255);
  assert.equal(load('\x80\x02M\xe9\x03.'), 1001);
  assert.equal(load(`\x80\x02J${le(-123456 >>> 0, 4)}.`), -123456);
  assert.equal(load('I42\n.'), 42);
  assert.equal(load('I-7\n.'), -7);
  assert.equal(load('I01\n.'), true);
  assert.equal(load('I00\n.'), false);
  assert.equal(load('L12345678901234567890L\n.'), 12345678901234567890n);
  assert.equal(load('\x80\x02\x8a\x00.'), 0);
  assert.equal(load('\x80\x02\x8a\x01\xff.'), -1);
  assert.equal(load('\x80\x02\x8a\x02\x00\x80.'), -32768);
  assert.equal(load('\x80\x02\x8a\x08\xff\xff\xff\xff\xff\xff\x1f\x00.'), Number.MAX_SAFE_INTEGER);
  assert.equal(load('\x80\x02\x8a\x08\x00\x00\x00\x00\x00\x00\x20\x00.'), 2n ** 53n);
  assert.equal(load('\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x80.'), -(2n ** 71n));
  // torch's legacy magic number
  assert.equal(load('\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.'), 0x1950a86a20f9469cfc6cn);
  assert.equal(load(`\x80\x02\x8b${le(3, 4)}\x01\x00\x01.`), 65537);
});

test('floats, None, booleans, bytes', () => {
  assert.equal(load('\x80\x02G\x3f\xf8\x00\x00\x00\x00\x00\x00.'), 1.5);
  assert.equal(load('F-0.25\n.'), -0.25);
  assert.equal(load('Finf\n.'), Infinity);
  assert.equal(load('\x80\x02N.'), null);
  assert.equal(load('\x80\x02\x88.'), true);
  assert.equal(load('\x80\x02\x89.'), false);
  assert.deepEqual(load('\x80\x03C\x03abc.'), bytes('abc'));
  assert.deepEqual(load(`\x80\x03B${le(2, 4)}\x00\xff.`), bytes('\x00\xff'));
  assert.deepEqual(load(`\x80\x05\x96${le(1, 8)}z.`), bytes('z'));
});

test('strings of every encoding', () => {
  assert.equal(load(`\x80\x02${uni('héllo ✓')}.`), 'héllo ✓');
  assert.equal(load('\x80\x04\x8c\x03abc.'), 'abc');
  assert.equal(load(`\x80\x04\x8d${le(2, 8)}hi.`), 'hi');
  assert.equal(load('Vcaf\\u00e9 \\U0001f600\n.'), 'café 😀');
  assert.equal(load("S'it\\'s\\n\\x41'\n."), "it's\nA");
  assert.equal(load(`\x80\x02T${le(3, 4)}cpu.`), 'cpu');
  assert.equal(load('\x80\x02U\x03cpu.'), 'cpu');
});

test('nested tuples, lists and dicts', () => {
  const v = load(`\x80\x02}q\x00(${uni('a')}K\x01K\x02\x86${uni('b')}](K\x03)N\x85eu.`);
  assert.ok(v instanceof Map);
  const a = v.get('a');
  assert.ok(a instanceof PyTuple);
  assert.deepEqual(a.items, [1, 2]);
  const b = v.get('b');
  assert.ok(Array.isArray(b));
  assert.equal(b[0], 3);
  assert.ok(b[1] instanceof PyTuple && b[1].items.length === 0);
  assert.ok(b[2] instanceof PyTuple && b[2].items[0] === null);
  // protocol 0 containers built from MARK
  const d = load('(dp0\nS\'k\'\np1\n(I1\nI2\nI3\ntp2\ns(lp3\nI4\naI5\na.');
  assert.deepEqual(d, [4, 5]);
  const t = load('(I1\n(I2\nI3\ntt.');
  assert.ok(t instanceof PyTuple && t.items[1] instanceof PyTuple);
  assert.deepEqual((t.items[1] as PyTuple).items, [2, 3]);
  const e = load('\x80\x02(K\x01K\x02d.');
  assert.ok(e instanceof Map && e.get(1) === 2);
  const three = load('\x80\x02K\x01K\x02K\x03\x87.');
  assert.ok(three instanceof PyTuple && three.items.length === 3);
});

test('memo put and get keep object identity', () => {
  const v = load('\x80\x02](]q\x05h\x05e.');
  assert.ok(Array.isArray(v) && Array.isArray(v[0]));
  assert.equal(v[0], v[1]);
  const w = load(`\x80\x02]r${le(70000, 4)}(j${le(70000, 4)}e.`);
  assert.ok(Array.isArray(w) && w[0] === w);
  const x = load('(lp7\ng7\na.');
  assert.ok(Array.isArray(x) && x[0] === x);
  const y = load('\x80\x04\x8c\x01a\x94\x8c\x01b\x94h\x00h\x01\x86.');
  assert.ok(y instanceof PyTuple);
  assert.deepEqual(y.items, ['a', 'b']);
  assert.throws(() => load('\x80\x02h\x09.'), /memo has no entry 9/);
});

test('stack opcodes: POP, POP_MARK, DUP, sets, frames', () => {
  assert.equal(load('\x80\x02K\x01K\x020.'), 1);
  assert.equal(load('\x80\x02K\x01(K\x02K\x031.'), 1);
  const dup = load('\x80\x02]2\x86.');
  assert.ok(dup instanceof PyTuple && dup.items[0] === dup.items[1]);
  const s = load('\x80\x04\x8f(K\x01K\x02\x90.');
  assert.ok(s instanceof Set && s.has(1) && s.has(2));
  const f = load('\x80\x04(K\x07\x91.');
  assert.ok(f instanceof Set && f.has(7));
  assert.equal(load(`\x80\x04\x95${le(3, 8)}K\x04.`), 4);
});

test('unpickleAt reads consecutive pickles', () => {
  const data = bytes('\x80\x02K\x01.\x80\x02K\x02.');
  const first = unpickleAt(data, 0, { file: 'x', globals: none });
  assert.deepEqual(first, { value: 1, end: 5 });
  assert.deepEqual(unpickleAt(data, first.end, { file: 'x', globals: none }), { value: 2, end: 10 });
});

test('allowed globals are called through their handler; BUILD goes to the handler that built the value', () => {
  const calls: PyValue[][] = [];
  const states: PyValue[] = [];
  const globals = new Map<string, GlobalHandler>([
    [
      'mod.make',
      { call: (args) => (calls.push([...args]), new Map([['made', true]])), build: (_t, s) => void states.push(s) },
    ],
    ['mod.Marker', {}],
  ]);
  const v = load(`\x80\x02cmod\nmake\nK\x01${uni('x')}\x86R}b.`, globals);
  assert.ok(v instanceof Map && v.get('made') === true);
  assert.deepEqual(calls, [[1, 'x']]);
  assert.equal(states.length, 1);
  const marker = load('\x80\x02cmod\nMarker\n.', globals);
  assert.ok(marker instanceof PyGlobal && marker.name === 'mod.Marker');
  assert.throws(() => load('\x80\x02cmod\nMarker\n)R.', globals), /not callable/);
  assert.throws(() => load('\x80\x02}}b.', globals), /cannot set the state of a dict/);
  // NEWOBJ and STACK_GLOBAL reach the same handler
  load('\x80\x04\x8c\x03mod\x8c\x04make\x93K\x02\x85\x81.', globals);
  assert.deepEqual(calls[1], [2]);
});

test('unlisted globals are refused when named, before any call', () => {
  const message =
    "refusing to load test.pkl: its pickle references the global 'os.system', " +
    'which a PyTorch state dict never needs (the file may be malicious)';
  assert.throws(() => load(`\x80\x02cos\nsystem\n${uni('echo pwned')}\x85R.`), (err: unknown) => {
    assert.ok(err instanceof FormatError);
    assert.equal(err.message, message);
    return true;
  });
  // refused at the GLOBAL itself, even with no REDUCE after it
  assert.throws(() => load('\x80\x02cos\nsystem\n.'), { message });
  for (const [stream, name] of [
    ['\x80\x04\x8c\x08builtins\x8c\x04eval\x93\x8c\x031+1\x85R.', 'builtins.eval'],
    ['\x80\x02cposix\nsystem\n.', 'posix.system'],
    ['\x80\x02csubprocess\nPopen\n.', 'subprocess.Popen'],
    ['\x80\x02cbuiltins\ngetattr\n.', 'builtins.getattr'],
    ["(S'ls'\nios\nsystem\n.", 'os.system'],
  ] as const) {
    assert.throws(
      () => load(stream),
      (err: unknown) => err instanceof FormatError && err.message.includes(`'${name}'`),
    );
  }
});

test('persistent ids go to the callback', () => {
  const seen: PyValue[] = [];
  const v = unpickle(bytes(`\x80\x02${uni('key')}K\x05\x86Q.`), {
    file: 'x',
    globals: none,
    persistentLoad: (pid) => (seen.push(pid), 'loaded'),
  });
  assert.equal(v, 'loaded');
  assert.ok(seen[0] instanceof PyTuple && seen[0].items[0] === 'key');
  assert.equal(unpickle(bytes('Pabc\n.'), { file: 'x', globals: none, persistentLoad: (pid) => pid }), 'abc');
  assert.throws(() => load('\x80\x02NQ.'), /unexpected persistent id/);
});

test('malformed streams fail with FormatError', () => {
  assert.throws(() => load('\x80\x02K\x01\xff.'), (err: unknown) => {
    assert.ok(err instanceof FormatError);
    assert.match(err.message, /opcode 0xff \(pickle offset 4\)/);
    return true;
  });
  assert.throws(() => load('\x80\x02K\x01'), PickleTruncatedError);
  assert.throws(() => load(`\x80\x02X${le(1000, 4)}abc`), PickleTruncatedError);
  assert.throws(() => load(`\x80\x04\x8e${le(2 ** 40, 8)}.`), PickleTruncatedError);
  assert.throws(() => load('\x80\x02.'), /stack underflow/);
  assert.throws(() => load('\x80\x02t.'), /MARK missing/);
  assert.throws(() => load('\x80\x02(K\x01\x86.'), /stack underflow/);
  assert.throws(() => load('\x80\x09N.'), /protocol 9/);
  assert.throws(() => load('\x80\x02K\x01K\x02K\x03s.'), /cannot set items on an int/);
  assert.throws(() => load('\x80\x02\x82\x01.'), /unsupported pickle opcode 0x82/);
  assert.throws(() => load(`${'('.repeat(5000)}N.`), /depth limit/);
  assert.throws(() => load(`\x80\x02\x8b${le(100000, 4)}${'\x00'.repeat(100000)}.`), /integer too large/);
});
