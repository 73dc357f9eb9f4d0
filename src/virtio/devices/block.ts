/**
 * virtio-blk (virtio 1.2 §5.2) over a raw image file: one request queue, I/O through
 * fs.promises on libuv's threadpool, several requests in flight at once.
 *
 * Offered features: SEG_MAX, SIZE_MAX, BLK_SIZE and FLUSH always; RO for a read-only
 * image, otherwise DISCARD and WRITE_ZEROES. Node has no fallocate, so DISCARD is a
 * validated no-op (the spec lets a device keep discarded data; reads are not promised to
 * return zeros) and WRITE_ZEROES writes real zeros in bounded chunks (write_zeroes_may_unmap
 * is 0; it allocates blocks in a sparse image). When the driver does not negotiate FLUSH the
 * device is writethrough: every write is fdatasync'ed before it completes (§5.2.6.2).
 *
 * Every request is answered with a status byte, except the two that cannot be (dropped:
 * returned with used length 0 and counted in {@link VirtioBlock.stats}):
 *
 * | request                                                      | answer          |
 * |--------------------------------------------------------------|-----------------|
 * | no device-writable byte (nowhere to put a status)            | drop `noStatus` |
 * | fewer than 16 device-readable bytes (no header)              | drop `shortHeader` |
 * | IN / OUT data length not a multiple of 512                   | IOERR           |
 * | IN / OUT data over {@link VirtioBlock.maxRequestBytes}       | IOERR           |
 * | IN / OUT sector + length beyond capacity (u64, no overflow)  | IOERR           |
 * | OUT, DISCARD or WRITE_ZEROES on a read-only image            | IOERR, nothing written |
 * | DISCARD / WRITE_ZEROES: no segment, a partial one, too many  | IOERR           |
 * | DISCARD / WRITE_ZEROES: a range too long or beyond capacity  | IOERR           |
 * | DISCARD / WRITE_ZEROES: an unknown flag, or DISCARD + unmap  | UNSUPP          |
 * | DISCARD / WRITE_ZEROES without the feature negotiated        | UNSUPP          |
 * | any other type (GET_LIFETIME, SECURE_ERASE, legacy, unknown) | UNSUPP          |
 * | GET_ID with fewer than 20 data bytes                         | OK, the ID truncated |
 * | buffers of the other direction (readable data after an IN header, writable bytes before an OUT status) | ignored |
 * | the host file operation fails (EIO, ENOSPC, EOF, closed)     | IOERR, counted in `hostErrors` |
 * | a QueueError (rings or buffers unusable)                     | needsReset, serving stops |
 *
 * Resources are bounded: at most {@link VirtioBlock.maxInFlight} file operations at a time
 * (further requests wait in the available ring, with notifications off), each with a host
 * bounce buffer of at most maxRequestBytes; GET_ID, DISCARD and errors are answered at once.
 * I/O goes through the bounce buffers, never through views of guest memory, so a remap of
 * guest memory cannot pull a buffer from under a pool thread.
 *
 * Snapshots: {@link VirtioBlock.quiesce} stops taking requests and waits for those in flight,
 * so the state holds none; it names no file. To restore (or clone) the device, open the
 * image to use — the same one, a copy or an overlay — and restore into that device: the
 * capacity, read-only flag, seg_max and size_max must match. The serial is the new device's.
 *
 * reset() does not cancel file operations already running: their completions are dropped
 * (counted as `stale`; they never touch guest memory or the rings), and they keep counting
 * against maxInFlight until they finish, so resetting in a loop cannot pile up host I/O.
 */
import { open, type FileHandle } from 'node:fs/promises';
import type { DescriptorChain } from '../chain.js';
import { VIRTIO_DEVICE_TYPE, type VirtioContext, type VirtioDevice } from '../device.js';
import type { SplitQueue } from '../queue.js';
import {
  BLK_HEADER_BYTES, SECTOR_SIZE, VIRTIO_BLK_CONFIG, VIRTIO_BLK_F, VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S, VIRTIO_BLK_T,
  VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP, BLK_RANGE_BYTES,
} from './block-constants.js';
import { ImageError, readFull, writeFull, writeZeroes } from './block-io.js';
import { inCapacity, parseBlockRequest, readBlockRanges, usedLength, type BlockRequest } from './block-request.js';
import { ConfigSpace, checkConfigAccess, checkConfigValue, type ConfigAccessSize } from './config-space.js';
import { DeviceCore, checkContext, checkQueueIndex, type ChainHandler } from './core.js';
import { featureBits, hasFeature } from './features.js';
import { boolOption, checkOptions, intOption, queueSizeOption } from './options.js';
import { checkDeviceState, checkNothingInFlight, type DeviceStateBase } from './state.js';
import { stateBool } from '../../pci/state-check.js';
import { checkInt } from '../../pci/util.js';

/**
 * The state of a {@link VirtioBlock}: no file handle, only what the guest saw of the image
 * (the device restored into opens its own image, which must match).
 */
export interface VirtioBlockState extends DeviceStateBase {
  /** Capacity in sectors. */
  capacity: number;
  /** The image was read-only (VIRTIO_BLK_F_RO offered). */
  readonly: boolean;
  /** seg_max in the configuration space. */
  segMax: number;
  /** size_max in the configuration space. */
  sizeMax: number;
}

/** Options of {@link VirtioBlock.open}. */
export interface VirtioBlockOptions {
  /** The raw image file (a regular file; sparse is fine). */
  readonly path: string;
  /** Open the image read-only and offer VIRTIO_BLK_F_RO (default false). */
  readonly readonly?: boolean;
  /** The device ID string of VIRTIO_BLK_T_GET_ID: printable ASCII, at most 20 characters (default empty). */
  readonly serial?: string;
  /** The request queue's maximum size: a power of two in [4, 32768] (default 256). */
  readonly queueSize?: number;
  /** The most file operations in flight at once, in [1, 1024] (default 8). */
  readonly maxInFlight?: number;
  /** seg_max: data segments per request, in [1, queueSize - 2] (default min(254, queueSize - 2)). */
  readonly segMax?: number;
  /** size_max: bytes per segment, a multiple of 512 in [4096, 4 MiB] (default 4096). */
  readonly sizeMax?: number;
}

/** Counters of a {@link VirtioBlock} (cumulative, kept across resets). */
export interface BlockStats {
  /** Chains served (popped and looked at). */
  requests: number;
  /** VIRTIO_BLK_T_IN requests. */
  reads: number;
  /** VIRTIO_BLK_T_OUT requests. */
  writes: number;
  /** VIRTIO_BLK_T_FLUSH requests. */
  flushes: number;
  /** VIRTIO_BLK_T_GET_ID requests. */
  getIds: number;
  /** VIRTIO_BLK_T_DISCARD requests. */
  discards: number;
  /** VIRTIO_BLK_T_WRITE_ZEROES requests. */
  writeZeroes: number;
  /** Requests answered VIRTIO_BLK_S_OK. */
  ok: number;
  /** Requests answered VIRTIO_BLK_S_IOERR (bad requests and failed file operations). */
  ioErrors: number;
  /** Requests answered VIRTIO_BLK_S_UNSUPP. */
  unsupported: number;
  /** Requests dropped (returned with used length 0, no status): noStatus + shortHeader. */
  dropped: number;
  /** Dropped: no device-writable byte for the status. */
  noStatus: number;
  /** Dropped: fewer than 16 device-readable bytes. */
  shortHeader: number;
  /** File operations that failed (their requests were answered IOERR). */
  hostErrors: number;
  /** Completions discarded because the device was reset while they ran. */
  stale: number;
  /** Bytes read from the image. */
  bytesRead: number;
  /** Bytes written to the image (data and zeros). */
  bytesWritten: number;
  /** The most file operations that were in flight at once. */
  peakInFlight: number;
}

function newBlockStats(): BlockStats {
  return {
    requests: 0, reads: 0, writes: 0, flushes: 0, getIds: 0, discards: 0, writeZeroes: 0, ok: 0, ioErrors: 0,
    unsupported: 0, dropped: 0, noStatus: 0, shortHeader: 0, hostErrors: 0, stale: 0, bytesRead: 0, bytesWritten: 0,
    peakInFlight: 0,
  };
}

/** max_discard_sectors: 2 GiB per discard segment. */
export const BLK_MAX_DISCARD_SECTORS = 0x40_0000;
/** max_discard_seg. */
export const BLK_MAX_DISCARD_SEG = 16;
/** discard_sector_alignment: 4 KiB. */
export const BLK_DISCARD_SECTOR_ALIGNMENT = 8;
/** max_write_zeroes_sectors: 32 MiB per write-zeroes segment. */
export const BLK_MAX_WRITE_ZEROES_SECTORS = 0x1_0000;
/** max_write_zeroes_seg. */
export const BLK_MAX_WRITE_ZEROES_SEG = 1;

/** Chains served per turn before the rest is deferred to setImmediate. */
const TURN_BUDGET = 64;

interface Outcome {
  readonly status: number;
  /** Read data to copy to the chain's writable part (IN). */
  readonly data?: Uint8Array;
}

interface ResolvedOptions {
  path: string;
  readonly: boolean;
  id: Uint8Array;
  queueSize: number;
  maxInFlight: number;
  segMax: number;
  sizeMax: number;
}

function resolveOptions(options: unknown): ResolvedOptions {
  const o = checkOptions<VirtioBlockOptions>(options, false);
  if (typeof o.path !== 'string' || o.path === '') throw new TypeError('options.path must be a non-empty string');
  const readonly = boolOption('readonly', o.readonly, false);
  const id = new Uint8Array(VIRTIO_BLK_ID_BYTES);
  if (o.serial !== undefined) {
    if (typeof o.serial !== 'string') throw new TypeError(`options.serial must be a string, got ${typeof o.serial}`);
    if (o.serial.length > VIRTIO_BLK_ID_BYTES || !/^[\x20-\x7e]*$/.test(o.serial)) {
      throw new RangeError(`options.serial must be at most ${VIRTIO_BLK_ID_BYTES} printable ASCII characters, got ${JSON.stringify(o.serial)}`);
    }
    for (let i = 0; i < o.serial.length; i++) id[i] = o.serial.charCodeAt(i);
  }
  const queueSize = queueSizeOption(o.queueSize, 4, 256);
  const maxInFlight = intOption('maxInFlight', o.maxInFlight, 1, 1024, 8);
  const segMax = intOption('segMax', o.segMax, 1, queueSize - 2, Math.min(254, queueSize - 2));
  const sizeMax = intOption('sizeMax', o.sizeMax, 4096, 4 * 1024 * 1024, 4096);
  if (sizeMax % SECTOR_SIZE !== 0) throw new RangeError(`options.sizeMax must be a multiple of ${SECTOR_SIZE}, got ${sizeMax}`);
  return { path: o.path, readonly, id, queueSize, maxInFlight, segMax, sizeMax };
}

/** A virtio block device over a raw image file; create it with {@link VirtioBlock.open}. */
export class VirtioBlock implements VirtioDevice {
  /** {@link VIRTIO_DEVICE_TYPE}.BLOCK. */
  readonly deviceType: number = VIRTIO_DEVICE_TYPE.BLOCK;
  /** SEG_MAX | SIZE_MAX | BLK_SIZE | FLUSH, plus RO (read-only) or DISCARD | WRITE_ZEROES. */
  readonly features: bigint;
  /** One request queue. */
  readonly queueSizes: readonly number[];
  /** struct virtio_blk_config through write_zeroes_may_unmap and its padding (60 bytes). */
  readonly configSize: number = VIRTIO_BLK_CONFIG.SIZE;
  /** The image path. */
  readonly path: string;
  /** True if the image was opened read-only (VIRTIO_BLK_F_RO). */
  readonly readonly: boolean;
  /** Size in 512-byte sectors: the image size rounded down. */
  readonly capacity: number;
  /** seg_max. */
  readonly segMax: number;
  /** size_max. */
  readonly sizeMax: number;
  /** The most data bytes one IN or OUT request may carry: segMax * sizeMax. */
  readonly maxRequestBytes: number;
  /** The most file operations in flight at once. */
  readonly maxInFlight: number;
  /** Counters, cumulative across resets. */
  readonly stats: BlockStats = newBlockStats();

  readonly #fh: FileHandle;
  readonly #config: ConfigSpace;
  readonly #id: Uint8Array;
  readonly #core = new DeviceCore(1);
  readonly #pending = new Set<Promise<void>>();
  #inFlight = 0;
  #negotiated = 0n;
  #writethrough = false;
  #closed = false;
  #closing: Promise<void> | undefined;
  #lastHostError: unknown;
  readonly #handle: ChainHandler = (chain, q) => this.#serveChain(chain, q);
  readonly #ready = (): boolean => this.#inFlight < this.maxInFlight;

  /**
   * Open the image at `options.path` ('r' if readonly, else 'r+') and make a device over
   * it. TypeError / RangeError naming a bad option; the fs error if the file cannot be
   * opened; {@link ImageError} if it is not a regular file.
   */
  static async open(options: VirtioBlockOptions): Promise<VirtioBlock> {
    const o = resolveOptions(options);
    const fh = await open(o.path, o.readonly ? 'r' : 'r+');
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new ImageError(o.path, `${o.path} is not a regular file`);
      return new VirtioBlock(fh, st.size, o);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  /** Use {@link VirtioBlock.open}: `fh` is the open image of `size` bytes, `o` the checked options. */
  private constructor(fh: FileHandle, size: number, o: ResolvedOptions) {
    this.#fh = fh;
    this.path = o.path;
    this.readonly = o.readonly;
    this.capacity = Math.floor(size / SECTOR_SIZE);
    this.segMax = o.segMax;
    this.sizeMax = o.sizeMax;
    this.maxRequestBytes = o.segMax * o.sizeMax;
    this.maxInFlight = o.maxInFlight;
    this.queueSizes = [o.queueSize];
    this.#id = o.id;
    const F = VIRTIO_BLK_F;
    this.features = featureBits(F.SIZE_MAX, F.SEG_MAX, F.BLK_SIZE, F.FLUSH)
      | (o.readonly ? featureBits(F.RO) : featureBits(F.DISCARD, F.WRITE_ZEROES));
    const c = new ConfigSpace(VIRTIO_BLK_CONFIG.SIZE);
    const C = VIRTIO_BLK_CONFIG;
    c.setU64(C.CAPACITY, this.capacity);
    c.setU32(C.SIZE_MAX, o.sizeMax);
    c.setU32(C.SEG_MAX, o.segMax);
    c.setU32(C.BLK_SIZE, SECTOR_SIZE);
    c.setU16(C.NUM_QUEUES, 1);
    if (!o.readonly) {
      c.setU32(C.MAX_DISCARD_SECTORS, BLK_MAX_DISCARD_SECTORS);
      c.setU32(C.MAX_DISCARD_SEG, BLK_MAX_DISCARD_SEG);
      c.setU32(C.DISCARD_SECTOR_ALIGNMENT, BLK_DISCARD_SECTOR_ALIGNMENT);
      c.setU32(C.MAX_WRITE_ZEROES_SECTORS, BLK_MAX_WRITE_ZEROES_SECTORS);
      c.setU32(C.MAX_WRITE_ZEROES_SEG, BLK_MAX_WRITE_ZEROES_SEG);
    }
    this.#config = c;
  }

  /** File operations running now (including ones started before a reset). */
  get inFlight(): number {
    return this.#inFlight;
  }
  /** True while file operations run (VirtioDevice.hostWorkPending). */
  get hostWorkPending(): boolean {
    return this.#inFlight > 0;
  }
  /** True once close() was called: requests needing the file are answered IOERR. */
  get closed(): boolean {
    return this.#closed;
  }
  /** The error of the last failed file operation, for diagnosis (undefined if none). */
  get lastHostError(): unknown {
    return this.#lastHostError;
  }

  /** Read the configuration space (little-endian; RangeError outside the 60 bytes). */
  readConfig(offset: number, size: ConfigAccessSize): number {
    return this.#config.read(offset, size);
  }

  /** Every field is read-only here (no CONFIG_WCE): writes are checked and ignored. */
  writeConfig(offset: number, size: ConfigAccessSize, value: number): void {
    checkConfigAccess(this.configSize, offset, size);
    checkConfigValue(size, value);
  }

  /** Start serving with the negotiated features and queue 0. */
  activate(ctx: VirtioContext): void {
    this.#core.activate(ctx);
    this.#negotiated = ctx.features;
    this.#writethrough = !this.readonly && !hasFeature(ctx.features, VIRTIO_BLK_F.FLUSH);
    this.#pump();
  }

  /** The driver notified the request queue (`index` 0). */
  notify(index: number): void {
    checkQueueIndex(index, 1);
    this.#pump();
  }

  /** Stop serving; completions of running file operations will be dropped. */
  reset(): void {
    this.#core.reset();
    this.#negotiated = 0n;
  }

  /** Resolves when no file operation is running (including ones started by completions meanwhile). */
  async whenIdle(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all(this.#pending);
  }

  /**
   * Close the image: from now on requests needing the file are answered IOERR; resolves
   * once running operations finished and the file is closed. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      await this.whenIdle();
      await this.#fh.close();
    })();
    return this.#closing;
  }

  /** Stop taking requests; resolves once every file operation in flight has completed and been answered. */
  async quiesce(): Promise<void> {
    this.#core.pause();
    await this.whenIdle();
  }

  /** Take requests again, starting with those that arrived meanwhile. */
  resume(): void {
    this.#core.resume();
    this.#pump();
  }

  /** The device's state (see {@link VirtioBlockState}); Error while file operations are in flight (quiesce first). */
  snapshot(): VirtioBlockState {
    if (this.#inFlight > 0) throw new Error(`${this.#inFlight} block requests are in flight: quiesce() before taking the state`);
    return { failed: this.#core.failedActivation, capacity: this.capacity, readonly: this.readonly, segMax: this.segMax, sizeMax: this.sizeMax };
  }

  /**
   * Check `state` against this device's image and limits (RangeError naming the field that
   * differs) and return the function that takes up the restored activation `ctx`.
   */
  prepareRestore(state: VirtioBlockState, ctx: VirtioContext | undefined): () => void {
    const s = checkDeviceState(state);
    const same = (name: 'capacity' | 'segMax' | 'sizeMax', v: number) => {
      if (checkInt(s[name], `state.${name}`, 0, Number.MAX_SAFE_INTEGER) !== v) throw new RangeError(`state.${name} is ${String(s[name])}, this device's is ${v}`);
    };
    same('capacity', this.capacity);
    same('segMax', this.segMax);
    same('sizeMax', this.sizeMax);
    if (stateBool(s.readonly, 'state.readonly') !== this.readonly) throw new RangeError(`state.readonly is ${String(s.readonly)}, this device's is ${this.readonly}`);
    if (ctx) checkContext(ctx, 1);
    checkNothingInFlight(ctx);
    return () => {
      this.#core.restore(ctx, s.failed);
      this.#negotiated = ctx?.features ?? 0n;
      this.#writethrough = ctx !== undefined && !this.readonly && !hasFeature(ctx.features, VIRTIO_BLK_F.FLUSH);
    };
  }

  #pump(): void {
    this.#core.serve(0, TURN_BUDGET, this.#handle, this.#ready);
  }

  #serveChain(chain: DescriptorChain, q: SplitQueue): boolean {
    const s = this.stats;
    s.requests++;
    const req = parseBlockRequest(chain);
    if (typeof req === 'string') {
      s[req]++;
      s.dropped++;
      return q.pushUsed(chain, 0);
    }
    const T = VIRTIO_BLK_T;
    switch (req.type) {
      case T.IN:
        s.reads++;
        return this.#readWrite(chain, q, req, false);
      case T.OUT:
        s.writes++;
        return this.#readWrite(chain, q, req, true);
      case T.FLUSH:
        s.flushes++;
        return this.#flush(chain, q);
      case T.GET_ID: {
        s.getIds++;
        const written = chain.writeBytes(this.#id.subarray(0, Math.min(VIRTIO_BLK_ID_BYTES, req.inBytes)));
        return this.#answer(chain, q, VIRTIO_BLK_S.OK, written);
      }
      case T.DISCARD:
        s.discards++;
        return this.#ranges(chain, q, req, true);
      case T.WRITE_ZEROES:
        s.writeZeroes++;
        return this.#ranges(chain, q, req, false);
      default:
        return this.#answer(chain, q, VIRTIO_BLK_S.UNSUPP, 0);
    }
  }

  #readWrite(chain: DescriptorChain, q: SplitQueue, req: BlockRequest, write: boolean): boolean {
    const { IOERR, OK } = VIRTIO_BLK_S;
    const bytes = write ? req.outBytes : req.inBytes;
    if (write && this.readonly) return this.#answer(chain, q, IOERR, 0);
    if (bytes % SECTOR_SIZE !== 0 || bytes > this.maxRequestBytes) return this.#answer(chain, q, IOERR, 0);
    if (!inCapacity(req.sector, bytes / SECTOR_SIZE, this.capacity)) return this.#answer(chain, q, IOERR, 0);
    if (bytes === 0) return this.#answer(chain, q, OK, 0);
    if (this.#closed) return this.#answer(chain, q, IOERR, 0);
    const fh = this.#fh;
    const position = Number(req.sector) * SECTOR_SIZE;
    if (write) {
      const data = chain.readBytes(bytes, BLK_HEADER_BYTES);
      return this.#submit(chain, q, async () => {
        await writeFull(fh, data, position);
        if (this.#writethrough) await fh.datasync();
        this.stats.bytesWritten += bytes;
        return { status: OK };
      });
    }
    return this.#submit(chain, q, async () => {
      const data = new Uint8Array(bytes);
      await readFull(fh, data, position);
      this.stats.bytesRead += bytes;
      return { status: OK, data };
    });
  }

  #flush(chain: DescriptorChain, q: SplitQueue): boolean {
    if (this.readonly) return this.#answer(chain, q, VIRTIO_BLK_S.OK, 0);
    if (this.#closed) return this.#answer(chain, q, VIRTIO_BLK_S.IOERR, 0);
    return this.#submit(chain, q, async () => {
      await this.#fh.datasync();
      return { status: VIRTIO_BLK_S.OK };
    });
  }

  /** DISCARD (`discard`) or WRITE_ZEROES. */
  #ranges(chain: DescriptorChain, q: SplitQueue, req: BlockRequest, discard: boolean): boolean {
    const { IOERR, OK, UNSUPP } = VIRTIO_BLK_S;
    if (!hasFeature(this.#negotiated, discard ? VIRTIO_BLK_F.DISCARD : VIRTIO_BLK_F.WRITE_ZEROES)) {
      return this.#answer(chain, q, UNSUPP, 0);
    }
    if (this.readonly) return this.#answer(chain, q, IOERR, 0);
    const maxSeg = discard ? BLK_MAX_DISCARD_SEG : BLK_MAX_WRITE_ZEROES_SEG;
    const maxSectors = discard ? BLK_MAX_DISCARD_SECTORS : BLK_MAX_WRITE_ZEROES_SECTORS;
    const count = req.outBytes / BLK_RANGE_BYTES;
    if (!Number.isInteger(count) || count < 1 || count > maxSeg) return this.#answer(chain, q, IOERR, 0);
    const ranges = readBlockRanges(chain, count);
    const UNMAP = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
    if (ranges.some((r) => (r.flags & ~UNMAP) !== 0 || (discard && (r.flags & UNMAP) !== 0))) {
      return this.#answer(chain, q, UNSUPP, 0);
    }
    if (ranges.some((r) => r.sectors > maxSectors || !inCapacity(r.sector, r.sectors, this.capacity))) {
      return this.#answer(chain, q, IOERR, 0);
    }
    if (discard) return this.#answer(chain, q, OK, 0);
    if (this.#closed) return this.#answer(chain, q, IOERR, 0);
    const fh = this.#fh;
    return this.#submit(chain, q, async () => {
      for (const r of ranges) {
        await writeZeroes(fh, Number(r.sector) * SECTOR_SIZE, r.sectors * SECTOR_SIZE);
        this.stats.bytesWritten += r.sectors * SECTOR_SIZE;
      }
      if (this.#writethrough) await fh.datasync();
      return { status: OK };
    });
  }

  /** Write `status` as the last writable byte and return the chain; true if it reached the used ring. */
  #answer(chain: DescriptorChain, q: SplitQueue, status: number, dataWritten: number): boolean {
    chain.writeBytes(Uint8Array.of(status), chain.writableBytes - 1);
    const s = this.stats;
    if (status === VIRTIO_BLK_S.OK) s.ok++;
    else if (status === VIRTIO_BLK_S.IOERR) s.ioErrors++;
    else s.unsupported++;
    return q.pushUsed(chain, usedLength(chain, dataWritten));
  }

  /** Run `op` as one in-flight file operation; the chain completes when it settles. */
  #submit(chain: DescriptorChain, q: SplitQueue, op: () => Promise<Outcome>): false {
    const epoch = this.#core.epoch;
    this.#inFlight++;
    if (this.#inFlight > this.stats.peakInFlight) this.stats.peakInFlight = this.#inFlight;
    const p = this.#run(chain, q, epoch, op);
    this.#pending.add(p);
    void p.then(() => this.#pending.delete(p));
    return false;
  }

  async #run(chain: DescriptorChain, q: SplitQueue, epoch: number, op: () => Promise<Outcome>): Promise<void> {
    let out: Outcome;
    try {
      out = await op();
    } catch (e) {
      this.stats.hostErrors++;
      this.#lastHostError = e;
      out = { status: VIRTIO_BLK_S.IOERR };
    }
    this.#inFlight--;
    if (this.#core.current(epoch)) {
      try {
        const written = out.data ? chain.writeBytes(out.data) : 0;
        if (this.#answer(chain, q, out.status, written)) this.#core.interrupt(0);
      } catch (e) {
        this.#core.fail(e);
      }
    } else {
      this.stats.stale++;
    }
    this.#pump();
  }
}
