/**
 * Parsing a virtio-blk request out of a descriptor chain, without trusting its framing
 * (§5.2.6: the device makes no assumption about how the guest splits the buffers).
 *
 * A request is a device-readable part — the 16-byte header, then (for writes, discard and
 * write zeroes) the data — and a device-writable part: the data of reads and GET_ID, then
 * the status byte, which is always the last writable byte.
 */
import type { DescriptorChain } from '../chain.js';
import { BLK_HEADER_BYTES, BLK_RANGE_BYTES } from './block-constants.js';

/** Why a request was dropped (returned with used length 0, nothing written). */
export type BlockDropReason =
  /** No device-writable byte: there is nowhere to put the status. */
  | 'noStatus'
  /** Fewer than 16 device-readable bytes: no complete header. */
  | 'shortHeader';

/** A request whose header and status byte are present. */
export interface BlockRequest {
  /** The `type` field. */
  readonly type: number;
  /** The `sector` field (a u64). */
  readonly sector: bigint;
  /** Device-readable bytes after the header (write data, or discard / write-zeroes segments). */
  readonly outBytes: number;
  /** Device-writable bytes before the status byte (read data, or the ID string). */
  readonly inBytes: number;
}

/** One discard or write-zeroes segment. */
export interface BlockRange {
  /** First sector (a u64). */
  readonly sector: bigint;
  /** Sectors in the range. */
  readonly sectors: number;
  /** The flags word (bit 0: unmap). */
  readonly flags: number;
}

/** The request in `chain`, or the reason to drop it. Reads the 16 header bytes only. */
export function parseBlockRequest(chain: DescriptorChain): BlockRequest | BlockDropReason {
  if (chain.writableBytes < 1) return 'noStatus';
  if (chain.readableBytes < BLK_HEADER_BYTES) return 'shortHeader';
  const h = chain.readBytes(BLK_HEADER_BYTES);
  const v = new DataView(h.buffer, h.byteOffset, h.byteLength);
  return {
    type: v.getUint32(0, true),
    sector: v.getBigUint64(8, true),
    outBytes: chain.readableBytes - BLK_HEADER_BYTES,
    inBytes: chain.writableBytes - 1,
  };
}

/** The `count` segments following the header of `chain` (the caller bounds `count`). */
export function readBlockRanges(chain: DescriptorChain, count: number): BlockRange[] {
  const bytes = chain.readBytes(count * BLK_RANGE_BYTES, BLK_HEADER_BYTES);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: BlockRange[] = [];
  for (let i = 0; i + BLK_RANGE_BYTES <= bytes.length; i += BLK_RANGE_BYTES) {
    out.push({ sector: v.getBigUint64(i, true), sectors: v.getUint32(i + 8, true), flags: v.getUint32(i + 12, true) });
  }
  return out;
}

/**
 * True if `sectors` sectors from `sector` lie within a disk of `capacity` sectors (no
 * overflow: `sector` is a full u64).
 */
export function inCapacity(sector: bigint, sectors: number, capacity: number): boolean {
  const cap = BigInt(capacity);
  return sector <= cap && BigInt(sectors) <= cap - sector;
}

/**
 * The used length to report when the first `dataWritten` bytes of the writable part and the
 * status byte were written: the written prefix, which includes the status only when the
 * data before it was written completely (the device writes at least `len` bytes from the
 * start, §2.7.8, and may write more — here the status byte past an unwritten gap).
 */
export function usedLength(chain: DescriptorChain, dataWritten: number): number {
  return dataWritten === chain.writableBytes - 1 ? chain.writableBytes : dataWritten;
}
