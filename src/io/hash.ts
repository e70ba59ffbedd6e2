import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { ioErrorFrom } from '../errors.js';

/** sha256 of a file, streamed (weight files can be tens of GB). */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  } catch (err) {
    throw ioErrorFrom(err, path, 'read');
  }
  return hash.digest('hex');
}
