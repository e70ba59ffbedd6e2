/**
 * Faulting memory in on libuv's threads. Each first touch of a page costs ~1–3 µs in this kind of VM
 * (~0.5 s for flan-t5-small's weights); reading /dev/zero into the pages pays that on another core
 * while the caller's thread does something else (loads the tokenizer).
 */
import { open } from 'node:fs/promises';

const CHUNK = 16 * 2 ** 20;
/** Reads in flight (each on a libuv thread); more slow down the caller's work on a 2-core machine. */
const LANES = 2;

/**
 * Reads zeros into `bytes` bytes of memory, a chunk at a time; `view(at, n)` returns a fresh view of the
 * chunk (the memory's buffer may be replaced meanwhile when it grows; the memory itself stays put, so a
 * read in flight is unaffected). With `until`, no new chunk starts once it settles. Only an optimisation:
 * without /dev/zero, or on any error, pages fault in on first use instead.
 */
export async function faultIn(view: (at: number, n: number) => Uint8Array, bytes: number, until?: Promise<unknown>): Promise<void> {
  const zero = await open('/dev/zero', 'r').catch(() => undefined);
  if (!zero) return;
  try {
    let next = 0;
    let stop = false;
    void until?.then(
      () => (stop = true),
      () => (stop = true),
    );
    const lane = async (): Promise<void> => {
      for (let at = next; at < bytes && !stop; at = next) {
        next += CHUNK;
        const n = Math.min(CHUNK, bytes - at);
        await zero.read(view(at, n), 0, n, 0);
      }
    };
    await Promise.all(Array.from({ length: LANES }, lane));
  } catch {
    // The pages fault in on first use instead.
  } finally {
    await zero.close();
  }
}
