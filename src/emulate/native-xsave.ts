/**
 * The vCPU's XCR0 and XSAVE image for the emulator host: KVM_GET_XCRS through the vCPU fd,
 * KVM_GET_XSAVE/KVM_SET_XSAVE through the addon's `xsaveGet`/`xsaveSet` (native/xsave.cc).
 */
import type { NativeVcpuFd } from '../kvm/native.js';
import { native } from '../kvm/native.js';

/** The addon functions of native/xsave.cc. */
export interface NativeXsave {
  /** KVM_GET_XSAVE2 (or KVM_GET_XSAVE) on a vCPU fd: the standard-format image, {@link xsaveSize} bytes (at least 4096). */
  xsaveGet(vcpuFd: number): ArrayBuffer;
  /** KVM_SET_XSAVE on a vCPU fd: an image of exactly {@link xsaveSize} bytes. */
  xsaveSet(vcpuFd: number, xsave: Uint8Array): void;
  /** The image size both use: the host's largest XSAVE area, at least sizeof(struct kvm_xsave). */
  xsaveSize(): number;
}

/** XCR0 from struct kvm_xcrs (nr_xcrs, flags, then {xcr u32, reserved u32, value u64}[16]). */
export function xcr0FromXcrs(xcrs: ArrayBuffer): bigint {
  const v = new DataView(xcrs);
  const n = Math.min(v.getUint32(0, true), 16);
  for (let i = 0; i < n; i++) {
    if (v.getUint32(8 + 16 * i, true) === 0) return v.getBigUint64(16 + 16 * i, true);
  }
  return 1n; // no XCR0 reported: x87 only, the architectural reset value
}

/** The host functions {@link ../emulate/host.js EmulatorHost} uses for XCR0 and XSAVE state. */
export function xsaveHost(vcpu: NativeVcpuFd): { getXcr0(): bigint; getXsave(): Uint8Array; setXsave(x: Uint8Array): void } {
  const addon = native() as unknown as NativeXsave;
  return {
    getXcr0: () => xcr0FromXcrs(vcpu.getXcrs()),
    getXsave: () => new Uint8Array(addon.xsaveGet(vcpu.fd)),
    setXsave: (x) => addon.xsaveSet(vcpu.fd, x),
  };
}
