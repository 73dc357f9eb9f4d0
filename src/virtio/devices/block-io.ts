/**
 * Positioned I/O on the image file through fs.promises (libuv's threadpool). Every
 * operation works on host buffers the device owns — never on views of guest memory, which a
 * memory-map change could take away while a pool thread still uses it.
 */
import type { FileHandle } from 'node:fs/promises';

/** The image returned fewer bytes than asked for (it shrank under the device). */
export class ShortReadError extends Error {
  /** A read of `wanted` bytes at `position` that hit end of file after `got`. */
  constructor(readonly position: number, readonly wanted: number, readonly got: number) {
    super(`read of ${wanted} bytes at ${position} reached end of file after ${got}`);
    this.name = 'ShortReadError';
  }
}

/** The image file cannot back a block device (not a regular file). */
export class ImageError extends Error {
  /** `path` cannot be used: `message` says why. */
  constructor(readonly path: string, message: string) {
    super(message);
    this.name = 'ImageError';
  }
}

/** Bytes of zeros written per call by {@link writeZeroes}. */
export const ZERO_CHUNK_BYTES = 256 * 1024;
let zeroChunk: Uint8Array | undefined;

/** Fill `buf` from the file at `position`, looping over short reads; ShortReadError at end of file. */
export async function readFull(fh: FileHandle, buf: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < buf.length; ) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) throw new ShortReadError(position, buf.length, done);
    done += bytesRead;
  }
}

/** Write all of `buf` to the file at `position`, looping over short writes. */
export async function writeFull(fh: FileHandle, buf: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < buf.length; ) {
    const { bytesWritten } = await fh.write(buf, done, buf.length - done, position + done);
    if (bytesWritten === 0) throw new Error(`write of ${buf.length} bytes at ${position} made no progress after ${done}`);
    done += bytesWritten;
  }
}

/**
 * Write `length` zero bytes at `position`, in chunks of {@link ZERO_CHUNK_BYTES} from one
 * shared, never-modified buffer (so memory stays bounded however long the range is).
 */
export async function writeZeroes(fh: FileHandle, position: number, length: number): Promise<void> {
  zeroChunk ??= new Uint8Array(ZERO_CHUNK_BYTES);
  for (let done = 0; done < length; ) {
    const n = Math.min(ZERO_CHUNK_BYTES, length - done);
    await writeFull(fh, zeroChunk.subarray(0, n), position + done);
    done += n;
  }
}
