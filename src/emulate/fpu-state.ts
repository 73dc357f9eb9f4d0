/**
 * Lazy access to the vCPU's x87/SSE state in struct kvm_fpu layout: the state is fetched from
 * the host on first use, edited in place, and written back at most once, only if some byte
 * actually changed.
 */
import { FPU, SIZEOF } from '../kvm/structs.js';
import { Unsupported } from './fault.js';

/** Where the FPU state comes from and goes to. */
export interface FpuSource {
  /** A copy of struct kvm_fpu (416 bytes). */
  getFpu(): DataView;
  /** Store struct kvm_fpu. */
  setFpu(fpu: DataView): void;
}

/** The lazily loaded FPU/SSE state of one emulation. */
export class LazyFpu {
  #view?: DataView;
  #original?: Uint8Array;
  constructor(private readonly source: FpuSource) {}

  /** The state (loaded on first use). */
  get view(): DataView {
    if (!this.#view) {
      const v = this.source.getFpu();
      if (!(v instanceof DataView) || v.byteLength < SIZEOF.kvm_fpu) throw new Unsupported('host.getFpu() did not return a 416-byte struct kvm_fpu');
      this.#view = v;
      this.#original = new Uint8Array(v.buffer, v.byteOffset, SIZEOF.kvm_fpu).slice();
    }
    return this.#view;
  }

  /** True if the state was loaded and differs from what was loaded. */
  get changed(): boolean {
    if (!this.#view || !this.#original) return false;
    const now = new Uint8Array(this.#view.buffer, this.#view.byteOffset, SIZEOF.kvm_fpu);
    for (let i = 0; i < now.length; i++) if (now[i] !== this.#original[i]) return true;
    return false;
  }

  /** Write the state back if it changed; returns whether it did. */
  flush(): boolean {
    if (!this.changed) return false;
    this.source.setFpu(this.#view!);
    return true;
  }

  /** Undo every edit since loading. */
  revert(): void {
    if (this.#view && this.#original) new Uint8Array(this.#view.buffer, this.#view.byteOffset, SIZEOF.kvm_fpu).set(this.#original);
  }

  /** A copy of XMM register `i` (16 bytes, little-endian). */
  xmm(i: number): Uint8Array {
    const v = this.view;
    return new Uint8Array(v.buffer, v.byteOffset + FPU.xmm + 16 * i, 16).slice();
  }

  /** Set XMM register `i` from 16 bytes. */
  setXmm(i: number, bytes: Uint8Array): void {
    const v = this.view;
    new Uint8Array(v.buffer, v.byteOffset + FPU.xmm + 16 * i, 16).set(bytes.subarray(0, 16));
  }

  /** MXCSR. */
  get mxcsr(): number {
    return this.view.getUint32(FPU.mxcsr, true);
  }
  set mxcsr(value: number) {
    this.view.setUint32(FPU.mxcsr, value >>> 0, true);
  }

  /** Read a 16-bit field at a struct kvm_fpu offset. */
  u16(offset: number): number {
    return this.view.getUint16(offset, true);
  }
  /** Write a 16-bit field. */
  setU16(offset: number, value: number): void {
    this.view.setUint16(offset, value & 0xffff, true);
  }
  /** Write an 8-bit field. */
  setU8(offset: number, value: number): void {
    this.view.setUint8(offset, value & 0xff);
  }
  /** Write a 64-bit field. */
  setU64(offset: number, value: bigint): void {
    this.view.setBigUint64(offset, BigInt.asUintN(64, value), true);
  }
}
