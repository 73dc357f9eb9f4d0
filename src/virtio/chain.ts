/**
 * Descriptor chains: walking and validating one chain of a split queue, and the device's
 * view of the result.
 *
 * A chain is validated completely when it is popped ({@link walkChain}): every
 * descriptor is read exactly once, so later guest writes to the descriptor table cannot
 * change what the device sees (the buffer *contents* of course stay guest-writable). A
 * chain is zero or more direct descriptors optionally followed by one descriptor that
 * points at an indirect table (§2.7.5.3); the table's descriptors chain from entry 0.
 *
 * Walking is bounded: at most `size` descriptors in the queue's table and at most the
 * table's entry count in an indirect table, so a loop ends as a `chainLength` drop.
 * Zero-length descriptors are allowed and contribute no segment.
 */
import {
  DESC_SIZE, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE,
} from './constants.js';
import { QueueError, type DropReason } from './errors.js';
import { DescriptorTable, guestWritable, inMemory, type QueueMemory, type RawDescriptor } from './memory.js';

/** One guest buffer of a chain: `len` (> 0) bytes at guest-physical `gpa`, all in guest memory. */
export interface BufferSegment {
  /** Guest-physical address of the first byte. */
  readonly gpa: number;
  /** Length in bytes, at least 1. */
  readonly len: number;
}

/** The bounds {@link walkChain} enforces. */
export interface ChainLimits {
  /** The queue size: the entry count of the queue's own table. */
  readonly size: number;
  /** VIRTIO_F_INDIRECT_DESC was negotiated. */
  readonly indirectDesc: boolean;
  /** The most descriptors an indirect table may hold. */
  readonly maxIndirectEntries: number;
  /** The most bytes (readable plus writable) a chain may describe. */
  readonly maxChainBytes: number;
}

/** A chain that passed {@link walkChain}, before it is wrapped in a {@link DescriptorChain}. */
export interface WalkedChain {
  /** Device-readable buffers, in chain order. */
  readonly readable: BufferSegment[];
  /** Device-writable buffers, in chain order. */
  readonly writable: BufferSegment[];
  /** Total bytes of `readable`. */
  readonly readableBytes: number;
  /** Total bytes of `writable`. */
  readonly writableBytes: number;
  /** Descriptors visited, including the one pointing at an indirect table. */
  readonly descriptors: number;
  /** True if the chain went through an indirect table. */
  readonly indirect: boolean;
}

/**
 * Walk the chain starting at `head` (< limits.size) in `table`, checking every rule
 * listed in {@link DropReason}. Returns the chain's segments, or the reason to drop it.
 * Throws only what `mem`'s accessors throw if memory changes under an already-checked
 * table (the queue turns that into a `memory` {@link QueueError}).
 */
export function walkChain(mem: QueueMemory, table: DescriptorTable, head: number, limits: ChainLimits): WalkedChain | DropReason {
  const readable: BufferSegment[] = [];
  const writable: BufferSegment[] = [];
  const d: RawDescriptor = { addr: 0, len: 0, flags: 0, next: 0 };
  let t = table;
  let index = head;
  let visitedInTable = 0;
  let descriptors = 0;
  let indirect = false;
  let readableBytes = 0;
  let writableBytes = 0;
  let sawWritable = false;
  for (;;) {
    if (++visitedInTable > t.entries) return 'chainLength';
    descriptors++;
    t.read(index, d);
    if (d.flags & VIRTQ_DESC_F_INDIRECT) {
      if (!limits.indirectDesc || indirect || d.flags & VIRTQ_DESC_F_NEXT) return 'indirect';
      if (d.len === 0 || d.len % DESC_SIZE !== 0 || d.len / DESC_SIZE > limits.maxIndirectEntries) return 'indirect';
      if (!inMemory(mem, d.addr, d.len)) return 'indirect';
      // The WRITE flag of the descriptor naming the table is ignored (§2.7.5.3.2).
      t = new DescriptorTable(mem, d.addr, d.len / DESC_SIZE);
      indirect = true;
      index = 0;
      visitedInTable = 0;
      continue;
    }
    const write = (d.flags & VIRTQ_DESC_F_WRITE) !== 0;
    if (!write && sawWritable) return 'order';
    sawWritable ||= write;
    if (d.len > 0) {
      if (readableBytes + writableBytes + d.len > limits.maxChainBytes) return 'byteCap';
      if (!inMemory(mem, d.addr, d.len)) return 'address';
      if (write) {
        if (!guestWritable(mem, d.addr, d.len)) return 'readOnly';
        writable.push({ gpa: d.addr, len: d.len });
        writableBytes += d.len;
      } else {
        readable.push({ gpa: d.addr, len: d.len });
        readableBytes += d.len;
      }
    }
    if (!(d.flags & VIRTQ_DESC_F_NEXT)) break;
    if (d.next >= t.entries) return 'descIndex';
    index = d.next;
  }
  return { readable, writable, readableBytes, writableBytes, descriptors, indirect };
}

/** What ties a chain to the queue (and the queue's life, between resets) it came from. */
export interface ChainOwner {
  /** Turn a host error during a buffer access into the queue's `memory` {@link QueueError}, stopping the queue. */
  fail(cause: unknown): QueueError;
}

function checkOffset(offset: unknown): number {
  if (typeof offset !== 'number') throw new TypeError(`offset must be a number, got ${typeof offset}`);
  if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`offset must be a non-negative safe integer, got ${offset}`);
  return offset;
}

/**
 * A validated descriptor chain: what a device processes for one request. Its readable
 * segments come before its writable ones in the guest's order. Return it to the driver
 * with {@link SplitQueue.pushUsed}.
 */
export class DescriptorChain {
  /** The head descriptor index: the id the used ring reports back. */
  readonly head: number;
  /** Device-readable buffers, in order. */
  readonly readable: readonly BufferSegment[];
  /** Device-writable buffers, in order. */
  readonly writable: readonly BufferSegment[];
  /** Total bytes of {@link readable}. */
  readonly readableBytes: number;
  /** Total bytes of {@link writable}. */
  readonly writableBytes: number;
  /** Descriptors in the chain, counting one that points at an indirect table. */
  readonly descriptors: number;
  /** True if the chain used an indirect table. */
  readonly indirect: boolean;
  /** The queue life the chain belongs to (compared by identity in pushUsed). */
  readonly owner: ChainOwner;
  readonly #mem: QueueMemory;

  /** Wrap `walked` (the chain at `head`, from {@link walkChain}) for `owner` over `mem`. */
  constructor(mem: QueueMemory, head: number, walked: WalkedChain, owner: ChainOwner) {
    this.#mem = mem;
    this.head = head;
    this.readable = walked.readable;
    this.writable = walked.writable;
    this.readableBytes = walked.readableBytes;
    this.writableBytes = walked.writableBytes;
    this.descriptors = walked.descriptors;
    this.indirect = walked.indirect;
    this.owner = owner;
  }

  /**
   * Copy up to `max` bytes of the readable part, starting `offset` bytes into it, into a
   * new array (of length min(max, readableBytes - offset), or 0). `max` bounds the
   * allocation however long the guest's buffers are.
   */
  readBytes(max: number, offset = 0): Uint8Array {
    if (typeof max !== 'number') throw new TypeError(`max must be a number, got ${typeof max}`);
    if (!Number.isSafeInteger(max) || max < 0) throw new RangeError(`max must be a non-negative safe integer, got ${max}`);
    const off = checkOffset(offset);
    const out = new Uint8Array(Math.max(0, Math.min(max, this.readableBytes - off)));
    this.#copy(this.readable, off, out, false);
    return out;
  }

  /** Copy readable bytes, starting `offset` bytes into the readable part, into `dst`; returns how many. */
  readInto(dst: Uint8Array, offset = 0): number {
    if (!(dst instanceof Uint8Array)) throw new TypeError('dst must be a Uint8Array');
    return this.#copy(this.readable, checkOffset(offset), dst, false);
  }

  /**
   * Copy `src` into the writable part, starting `offset` bytes into it; returns how many
   * bytes fitted (the rest of `src` is not written). Nothing is written outside the
   * chain's writable buffers.
   */
  writeBytes(src: Uint8Array, offset = 0): number {
    if (!(src instanceof Uint8Array)) throw new TypeError('src must be a Uint8Array');
    return this.#copy(this.writable, checkOffset(offset), src, true);
  }

  /** Move bytes between `bytes` and `segs` starting `offset` bytes into the segments. */
  #copy(segs: readonly BufferSegment[], offset: number, bytes: Uint8Array, toGuest: boolean): number {
    let skip = offset;
    let done = 0;
    try {
      for (const s of segs) {
        if (done === bytes.length) break;
        if (skip >= s.len) {
          skip -= s.len;
          continue;
        }
        const n = Math.min(s.len - skip, bytes.length - done);
        const part = bytes.subarray(done, done + n);
        const live = this.#mem.slice?.(s.gpa + skip, n);
        if (live && live.length === n) {
          if (toGuest) live.set(part);
          else part.set(live);
        } else if (toGuest) this.#mem.writeBytes(s.gpa + skip, part);
        else part.set(this.#mem.readBytes(s.gpa + skip, n));
        done += n;
        skip = 0;
      }
    } catch (e) {
      throw this.owner.fail(e);
    }
    return done;
  }
}
