/**
 * A test VirtioDevice: on each notification it pops every chain and echoes the readable
 * bytes into the writable buffers (as many as fit), then interrupts. It records what the
 * transport did to it, can hold completions back (to test reset mid-flight) and can be
 * told to throw.
 *
 * Configuration space (16 bytes): 0 le32 magic (read-only), 4 le64 capacity (host-set,
 * read-only to the driver), 12 u8 scratch (read-write), 13-15 reserved (read 0).
 */
import type { DescriptorChain, SplitQueue, VirtioContext, VirtioDevice } from '../../../../src/virtio/index.js';

export const ECHO_MAGIC = 0x6f686365; // "echo"

export interface EchoOptions {
  deviceType?: number;
  features?: bigint;
  queueSizes?: number[];
  configSize?: number;
}

export class EchoDevice implements VirtioDevice {
  readonly deviceType: number;
  readonly features: bigint;
  readonly queueSizes: readonly number[];
  readonly configSize: number;
  ctx: VirtioContext | undefined;
  readonly log: string[] = [];
  /** Chains held back while `defer` is set, with their queue and answer length. */
  readonly held: { q: SplitQueue; index: number; chain: DescriptorChain; len: number }[] = [];
  defer = false;
  /** Throw from the next notify (a device bug). */
  throwOnNotify = false;
  capacity = 0x1_0000_0001n;
  scratch = 0;
  configReads = 0;

  constructor(opts: EchoOptions = {}) {
    this.deviceType = opts.deviceType ?? 4;
    this.features = opts.features ?? 0n;
    this.queueSizes = opts.queueSizes ?? [8, 8];
    this.configSize = opts.configSize ?? 16;
  }

  readConfig(offset: number, size: 1 | 2 | 4): number {
    this.configReads++;
    if (offset < 0 || offset + size > this.configSize) throw new RangeError(`readConfig outside: ${offset}+${size}`);
    const bytes = new Uint8Array(16);
    const v = new DataView(bytes.buffer);
    v.setUint32(0, ECHO_MAGIC, true);
    v.setBigUint64(4, this.capacity, true);
    bytes[12] = this.scratch;
    let out = 0;
    for (let i = size - 1; i >= 0; i--) out = out * 256 + bytes[offset + i];
    return out;
  }

  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void {
    if (offset < 0 || offset + size > this.configSize) throw new RangeError(`writeConfig outside: ${offset}+${size}`);
    this.log.push(`writeConfig ${offset} ${size} ${value}`);
    if (offset === 12 && size === 1) this.scratch = value;
  }

  activate(ctx: VirtioContext): void {
    this.log.push(`activate ${ctx.features.toString(16)}`);
    this.ctx = ctx;
  }

  notify(index: number): void {
    this.log.push(`notify ${index}`);
    if (this.throwOnNotify) {
      this.throwOnNotify = false;
      throw new Error('echo device bug');
    }
    const ctx = this.ctx!;
    const q = ctx.queues[index];
    if (!q) return;
    for (let chain; (chain = q.pop()); ) {
      const data = chain.readBytes(chain.writableBytes);
      const len = chain.writeBytes(data);
      if (this.defer) this.held.push({ q, index, chain, len });
      else q.pushUsed(chain, len);
    }
    if (!this.defer) ctx.interrupt(index);
  }

  /** Complete the held chains through `ctx` (possibly a stale one); returns pushUsed's answers. */
  release(ctx = this.ctx!): boolean[] {
    const out = this.held.map((h) => h.q.pushUsed(h.chain, h.len));
    const queues = new Set(this.held.map((h) => h.index));
    this.held.length = 0;
    for (const i of queues) ctx.interrupt(i);
    return out;
  }

  reset(): void {
    this.log.push('reset');
    this.ctx = undefined;
  }
}
