/**
 * Loads the native addon (build/Release/vmmapi_native.node) and types its surface.
 * The addon is thin: one method per ioctl; see native/. Structs cross as raw bytes and are
 * decoded in ./structs.ts.
 */
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KvmError } from '../errors.js';

/** The /dev/kvm system fd. */
export interface NativeKvmSystem {
  readonly fd: number;
  close(): void;
  apiVersion(): number;
  checkExtension(cap: number): number;
  vcpuMmapSize(): number;
  supportedCpuid(): ArrayBuffer;
  msrIndexList(): Uint32Array;
  createVm(type?: number): number;
}

/**
 * Guest RAM exposed as a SharedArrayBuffer: anonymous shared memory, or (constructed with a
 * file descriptor) a private copy-on-write mapping of a file.
 */
export interface NativeGuestMapping {
  readonly length: number;
  buffer(): SharedArrayBuffer;
  release(): void;
  /** Allocated byte ranges of memfd-backed RAM, flat [start, end, ...]; null for a file-backed mapping (or after release). */
  dataRanges(): number[] | null;
}

/** A VM fd. */
export interface NativeVmFd {
  readonly fd: number;
  close(): void;
  checkExtension(cap: number): number;
  createVcpu(id: number): number;
  setUserMemoryRegion(slot: number, flags: number, gpa: number | bigint, size: number | bigint, mapping: NativeGuestMapping | null, offset?: number | bigint): void;
  setTssAddr(addr: number): void;
  setIdentityMapAddr(addr: number | bigint): void;
  createIrqchip(): void;
  createPit2(flags?: number): void;
  irqLine(irq: number, level: number): number;
  signalMsi(addressLo: number, addressHi: number, data: number): number;
  enableCap(cap: number, args?: (number | bigint)[], flags?: number): void;
  registerCoalescedMmio(addr: number | bigint, size: number, pio?: number): void;
  unregisterCoalescedMmio(addr: number | bigint, size: number, pio?: number): void;
  setGsiRouting(routing: Uint8Array): void;
  irqfd(eventfd: number, gsi: number, flags?: number, resamplefd?: number): void;
  ioeventfd(addr: number | bigint, len: number, eventfd: number, flags?: number, datamatch?: bigint): void;
  createDevice(type: number): number;
  setDeviceAttr(deviceFd: number, group: number, attr: number | bigint, value: number): void;
  mapDeviceRegion(slot: number, gpa: number | bigint, size: number | bigint, fd: number, fileOffset: number | bigint): void;
  /** KVM_GET_IRQCHIP of chip `chipId` (0 PIC master, 1 PIC slave, 2 IOAPIC): struct kvm_irqchip, 520 bytes. */
  getIrqchip(chipId: number): ArrayBuffer;
  /** KVM_SET_IRQCHIP: a struct kvm_irqchip (520 bytes); its chip_id names the chip. */
  setIrqchip(irqchip: ArrayBuffer | Uint8Array): void;
  /** KVM_GET_PIT2: struct kvm_pit_state2, 112 bytes. */
  getPit2(): ArrayBuffer;
  /** KVM_SET_PIT2: a struct kvm_pit_state2 (112 bytes). */
  setPit2(pit: ArrayBuffer | Uint8Array): void;
  /** KVM_GET_CLOCK: struct kvm_clock_data, 48 bytes. */
  getClock(): ArrayBuffer;
  /** KVM_SET_CLOCK: a struct kvm_clock_data (48 bytes). */
  setClock(clock: ArrayBuffer | Uint8Array): void;
}

/** A vCPU fd (adopted by fd number in any thread). */
export interface NativeVcpuFd {
  readonly fd: number;
  close(): void;
  /**
   * One KVM_RUN; returns the exit reason (KVM_EXIT_INTR after a kick or a signal). With
   * `timeoutMs` (an integer in [0, 2^32)), a watchdog thread kicks the vCPU if KVM_RUN has
   * not returned by then.
   */
  run(timeoutMs?: number): number;
  runBuffer(): ArrayBuffer;
  getRegs(): ArrayBuffer; setRegs(b: ArrayBuffer | Uint8Array): void;
  getSregs(): ArrayBuffer; setSregs(b: ArrayBuffer | Uint8Array): void;
  getFpu(): ArrayBuffer; setFpu(b: ArrayBuffer | Uint8Array): void;
  getLapic(): ArrayBuffer; setLapic(b: ArrayBuffer | Uint8Array): void;
  getVcpuEvents(): ArrayBuffer; setVcpuEvents(b: ArrayBuffer | Uint8Array): void;
  getMpState(): ArrayBuffer; setMpState(b: ArrayBuffer | Uint8Array): void;
  getDebugregs(): ArrayBuffer; setDebugregs(b: ArrayBuffer | Uint8Array): void;
  getXcrs(): ArrayBuffer; setXcrs(b: ArrayBuffer | Uint8Array): void;
  /** KVM_GET_XSAVE2 (KVM_GET_XSAVE where it is missing): the XSAVE image, `xsaveSize()` bytes (native/xsave.cc). */
  getXsave(): ArrayBuffer;
  /** KVM_SET_XSAVE: an image of exactly `xsaveSize()` bytes, as getXsave returned it. */
  setXsave(b: ArrayBuffer | Uint8Array): void;
  setGuestDebug(b: ArrayBuffer | Uint8Array): void;
  translate(linear: number | bigint): { physical: bigint; valid: boolean; writeable: boolean; usermode: boolean };
  getMsrs(b: Uint8Array): number;
  setMsrs(b: Uint8Array): number;
  setCpuid2(b: Uint8Array): void;
  nmi(): void;
  interrupt(irq: number): void;
  getStatsFd(): number;
  getTscKhz(): number;
  setTscKhz(khz: number): void;
}

/** A plain fd (stats, eventfd, VFIO). */
export interface NativeFileFd {
  readonly fd: number;
  close(): void;
  pread(length: number, offset: number | bigint): ArrayBuffer;
  read(length: number): ArrayBuffer;
  write(bytes: Uint8Array): number;
}

/**
 * Calls `callback` on the creating thread's event loop whenever `fd` is readable (uv_poll);
 * `callback(errno | null)`. The fd stays the caller's; close() stops watching.
 */
export interface NativeFdWatcher {
  readonly fd: number;
  close(): void;
  /** Read a non-blocking eventfd's counter: signals since the last drain (0 if none). */
  drainEventfd(): number;
}

/** VFIO ioctls on fd numbers. */
export interface NativeVfio {
  getApiVersion(fd: number): number;
  checkExtension(fd: number, ext: number): number;
  setIommu(fd: number, type: number): number;
  groupGetStatus(groupFd: number): number;
  groupSetContainer(groupFd: number, containerFd: number): void;
  groupUnsetContainer(groupFd: number): void;
  groupGetDeviceFd(groupFd: number, name: string): number;
  deviceGetInfo(deviceFd: number): { flags: number; numRegions: number; numIrqs: number };
  deviceGetRegionInfo(deviceFd: number, index: number): { flags: number; size: bigint; offset: bigint };
  iommuMapDma(containerFd: number, mapping: NativeGuestMapping, offset: number | bigint, iova: number | bigint, size: number | bigint): void;
  deviceSetIrqsEventfd(deviceFd: number, index: number, start: number, eventfds: number[]): void;
}

/** The addon's exports. */
export interface NativeAddon {
  KvmSystem: new (path?: string) => NativeKvmSystem;
  /**
   * `new GuestMapping(length)`: anonymous shared memory. `new GuestMapping(length, fd, offset)`:
   * MAP_PRIVATE over a regular file (at least offset + length bytes, offset page-aligned;
   * RangeError otherwise): pages are read on first touch and copied on write, the file is
   * never changed. The fd stays the caller's.
   */
  GuestMapping: new (length: number | bigint, fd?: number, offset?: number | bigint) => NativeGuestMapping;
  VmFd: new (fd: number, vcpuMmapSize: number) => NativeVmFd;
  VcpuFd: new (fd: number) => NativeVcpuFd;
  FileFd: { new (fd: number): NativeFileFd; new (path: string, flags?: number): NativeFileFd };
  FdWatcher: new (fd: number, callback: (errno: number | null) => void) => NativeFdWatcher;
  vfio: NativeVfio;
  eventfd(initval?: number): number;
  /**
   * Attach to the existing TAP interface `name`: /dev/net/tun opened non-blocking and bound
   * with TUNSETIFF (IFF_TAP | IFF_NO_PI, and IFF_VNET_HDR with `vnetHdr`). Returns the fd
   * (the caller's to close). KvmError ENODEV if there is no such interface.
   */
  tapOpen(name: string, vnetHdr?: boolean): number;
  setErrorClass(cls: typeof KvmError): void;
  kick(vcpuFd: number): boolean;
  readonly kickSignal: number;
  setThreadAffinity(cpu: number): void;
  getThreadAffinity(): number[];
  threadId(): number;
  /**
   * futex(FUTEX_WAIT) on `cells[index]`: sleep while it equals `expected`, at most `timeoutUs`
   * microseconds (0: no limit). 0 woken, 1 not equal, 2 timed out, 3 interrupted by a signal.
   */
  futexWait(cells: Int32Array, index: number, expected: number, timeoutUs: number): 0 | 1 | 2 | 3;
  /** futex(FUTEX_WAKE) on `cells[index]`: wake up to `count` waiters; returns how many woke. */
  futexWake(cells: Int32Array, index: number, count: number): number;
  layout(): Record<string, number>;
  execSse(code: Uint8Array, regs: Uint8Array, fx: Uint8Array, scratch: Uint8Array): number;
  /** Locked 16-byte compare-exchange on `cell` (16 bytes, 16-byte aligned): [ok, oldLo, oldHi]. */
  cmpxchg16b(cell: Uint8Array, expectedLo: bigint, expectedHi: bigint, newLo: bigint, newHi: bigint): [boolean, bigint, bigint];
  readonly pageSize: number;
  /** The XSAVE image size every XSAVE call uses: the host's largest XSAVE area, at least 4096 (native/xsave.cc). */
  xsaveSize(): number;
}

/** The package root: the nearest folder above this file whose package.json names vmmapi. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = join(dir, 'package.json');
    if (existsSync(pj)) {
      try {
        if (JSON.parse(readFileSync(pj, 'utf8')).name === 'vmmapi') return dir;
      } catch {
        /* keep looking */
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new Error('vmmapi: cannot find the package root (package.json named "vmmapi")');
    dir = up;
  }
}

let loaded: NativeAddon | undefined;

/** The native addon for this thread (loaded once per thread; safe in workers). */
export function native(): NativeAddon {
  if (loaded) return loaded;
  const path = join(packageRoot(), 'build', 'Release', 'vmmapi_native.node');
  if (!existsSync(path)) {
    throw new Error(
      `vmmapi: the native addon is not built (${path} is missing): run \`npm rebuild vmmapi\` (in a clone of vmmapi: \`npm run build\`); if npm skipped vmmapi's install script, allow it first (\`npm install-scripts approve vmmapi\`)`,
    );
  }
  const addon = createRequire(import.meta.url)(path) as NativeAddon;
  addon.setErrorClass(KvmError);
  loaded = addon;
  return addon;
}
