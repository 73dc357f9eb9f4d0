/**
 * `createPc`: a PC-compatible machine on KVM — RAM, an in-kernel irqchip and PIT (which
 * serves port 0x61 too: OUT2 of channel 2 in bit 5), the legacy devices (COM1, i8042, CMOS,
 * POST, 0xcf9 reset, debug-exit (movable: {@link PcOptions.debugExit}), debugcon, fw_cfg, ACPI
 * PM1a), a PCI bus (host bridge at 00:00.0, config ports 0xcf8/0xcfc, ECAM; functions added
 * with {@link Pc.addPciDevice}), a worker-thread vCPU runner, and loaders for a BIOS ROM, a
 * Multiboot kernel, a Linux bzImage or a flat binary. See src/platform/layout.ts for the
 * memory and port map.
 *
 * ```ts
 * const pc = createPc({ memory: 64 << 20, cpus: 2, serial: { onOutput: (b) => out.push(b) } });
 * try {
 *   pc.loadMultiboot(readFileSync('kernel.elf'));
 *   const result = await pc.run({ timeoutMs: 10_000 });
 * } finally {
 *   pc.destroy();
 * }
 * ```
 */
import { randomBytes } from 'node:crypto';
import type { BootState } from '../boot/boot-state.js';
import { ineffectiveClears, type CpuidBit, type CpuidOptions } from '../cpuid.js';
import type { FirmwarePlan } from '../boot/firmware.js';
import type { FlatOptions } from '../boot/flat.js';
import type { LinuxBootState } from '../boot/linux.js';
import type { MultibootBootState } from '../boot/multiboot.js';
import type { PciFunction } from '../pci/bus.js';
import type { MsiSink } from '../pci/msix.js';
import { describeExit } from '../exits.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { VcpuRunner, type RunResult } from '../runner/runner.js';
import { Vm } from '../vm.js';
import type { ResetKind } from '../devices/reset-port.js';
import { attachDevices, type PcDevices } from './devices.js';
import { emulatedTotals } from './emulated.js';
import { pciLayout, ramRanges } from './layout.js';
import { PcPci, type PcPciDevice, type PcPciDeviceOptions } from './pci.js';
import { PcVirtio, type PcVirtioDevice, type PcVirtioOptions } from './virtio.js';
import type { VirtioDevice } from '../virtio/device.js';
import { mkdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { encodeVcpuState, encodeVmState } from '../kvm-state.js';
import { SNAPSHOT_FORMAT, writeStateFile, type SnapshotBody, type SnapshotSegment } from '../snapshot/format.js';
import { writeMemoryFile } from '../snapshot/memory-file.js';
import { pcDevicesState } from './device-state.js';
import { packageVersion } from '../package-version.js';
import { checkPcOptions } from './options.js';
import type { EngineChoice } from '../runner/protocol.js';
import { bootFirmware, bootFlat, bootLinux, bootMultiboot, type PcLinuxOptions, type PcMultibootOptions } from './loaders.js';

/** Where COM1's bytes go and come from. */
export interface PcSerialOptions {
  /** Called with every byte the guest transmits on COM1. */
  onOutput?: (byte: number) => void;
  /** A stream whose data is fed to COM1's receiver while the machine runs. */
  input?: NodeJS.ReadableStream;
}

/** Options for {@link createPc}. */
export interface PcOptions {
  /** Guest RAM in bytes: a multiple of 4 KiB, at least 1 MiB (below 3 GiB at 0, the rest at 4 GiB). */
  memory: number;
  /** Number of vCPUs, 1-254 (default 1). */
  cpus?: number;
  /** COM1 (port 0x3f8, IRQ 4). */
  serial?: PcSerialOptions;
  /** Sink of the debug console (port 0x402; SeaBIOS logs there). Without it the port is absent. */
  debugcon?: (byte: number) => void;
  /**
   * Where the isa-debug-exit device sits: `port` (default 0x501) and `size`, the number of
   * ports it claims (QEMU's iosize: 1, 2 or 4; default 2). Test harnesses commonly use
   * `{ port: 0xf4, size: 4 }`. A write at `port` ends the run with `{ reason: 'debug-exit',
   * status: (value << 1) | 1 }`.
   */
  debugExit?: { port?: number; size?: number };
  /** Called when the guest writes the debug-exit port, with status `(value << 1) | 1`. */
  onExit?: (status: number) => void;
  /** Called with one line (describeExit) per exit the main thread sees. */
  traceExits?: (line: string) => void;
  /** CPUID adjustments for every vCPU, e.g. `{ clear: ['cx16'] }` (see CPUID_BITS). */
  cpuid?: CpuidOptions;
  /**
   * Let the runner finish, in userspace, instructions KVM's emulator gives up on (see
   * VcpuRunnerOptions.emulate; default: the runner's default).
   */
  emulate?: boolean;
  /**
   * Who runs ring-0 long-mode code: `'kvm'` (default) or `'cpl0'`, vmmapi's engine (see
   * VcpuRunnerOptions.engine). Experimental.
   */
  engine?: EngineChoice;
  /** VM name (default: a unique one). */
  name?: string;
  /**
   * Virtio devices to put on the PCI bus, in slot order, each as {@link Pc.addVirtioDevice}
   * would (e.g. `[await VirtioBlock.open({ path: 'disk.img' }), new VirtioRng()]`).
   */
  virtio?: VirtioDevice[];
}

/** SLP_TYP of `\_S5` (soft-off) in the DSDT that src/boot/acpi.ts writes by default. */
const S5_SLEEP_TYPE = 5;

/** Why {@link Pc.run} ended. */
export type PcRunResult =
  | { reason: 'debug-exit'; status: number }
  | { reason: 'poweroff' }
  | { reason: 'reset'; kind: ResetKind | 'keyboard' }
  | { reason: 'halted' }
  | { reason: 'triple-fault' }
  | { reason: 'stopped' }
  | { reason: 'timeout' };

/**
 * Why a run ended, in words (one line): `debug-exit: the guest wrote 0x1 (status 3)`,
 * `every vCPU halted with interrupts disabled ...`, `triple fault ...`, and so on.
 */
export function describeRunResult(r: PcRunResult): string {
  switch (r.reason) {
    case 'debug-exit':
      return `debug-exit: the guest wrote 0x${Math.floor(r.status / 2).toString(16)} to the isa-debug-exit port (status ${r.status})`;
    case 'poweroff':
      return 'the guest powered off (ACPI S5 or a KVM shutdown event)';
    case 'reset':
      return `the guest asked for a reset (${r.kind === 'keyboard' ? 'i8042 pulse' : `0xcf9 ${r.kind}`})`;
    case 'halted':
      return 'every vCPU halted with interrupts disabled (HLT with IF=0, or an AP waiting for INIT/SIPI): nothing can wake the guest';
    case 'triple-fault':
      return 'triple fault: KVM shut the guest down (an exception it could not deliver)';
    case 'stopped':
      return 'stopped by the host (Pc.stop)';
    case 'timeout':
      return 'the timeout expired; the guest was stopped';
  }
}

/** Options for {@link Pc.snapshot}. */
export interface PcSnapshotOptions {
  /** The caller's own data, stored with the snapshot (JSON-safe), e.g. how to reopen its devices. */
  meta?: Record<string, unknown>;
}

/** What {@link Pc.snapshot} wrote. */
export interface PcSnapshotInfo {
  dir: string;
  format: string;
  /** memory.bin's length (holes included). */
  memoryBytes: number;
  /** Bytes of guest memory actually written (non-zero pages). */
  writtenBytes: number;
  /** How long writing took, ms. */
  ms: number;
}

/** A snapshot's guest memory for {@link Pc}'s constructor: memory.bin open as `fd`, mapped privately. @internal */
export interface PcMemoryImage {
  fd: number;
  segments: readonly SnapshotSegment[];
}

/** Options for {@link Pc.run}. */
export interface PcRunOptions {
  /** Stop with `{ reason: 'timeout' }` after this many milliseconds. */
  timeoutMs?: number;
}

/** A PC-compatible machine. Create it with {@link createPc}; {@link destroy} it when done. */
export class Pc {
  /** The VM. */
  readonly vm: Vm;
  /** The vCPU runner (register more devices on `runner.pio` / `runner.mmio` before {@link run}). */
  readonly runner: VcpuRunner;
  /** Guest RAM in bytes. */
  readonly memoryBytes: number;
  /** Number of vCPUs. */
  readonly cpus: number;
  /** The platform devices. */
  readonly devices: PcDevices;
  /** The PCI bus, its config mechanisms and BAR wiring (add functions with {@link addPciDevice}). */
  readonly pci: PcPci;
  /** The virtio devices (add them with {@link addVirtioDevice}). */
  readonly virtio: PcVirtio;

  readonly #opts: PcOptions;
  #paused = false;
  #result: PcRunResult | undefined;
  #loaded: string | undefined;
  #ran = false;

  /** @internal Use {@link createPc} (or restorePc, which passes the snapshot's memory file as `image`). */
  constructor(opts: PcOptions, image?: PcMemoryImage) {
    const { memory, cpus, debugExit } = checkPcOptions(opts);
    this.#opts = opts;
    this.memoryBytes = memory;
    this.cpus = cpus;
    // pitSpeaker: KVM serves port 0x61, so bit 5 follows PIT channel 2's output (TSC calibration)
    this.vm = Vm.create(opts.name ?? `pc-${process.pid}-${randomBytes(4).toString('hex')}`, { vcpus: cpus, irqchip: true, pitSpeaker: true, cpuid: opts.cpuid });
    try {
      if (image) {
        for (const seg of image.segments) this.vm.setupMemory(seg.gpa, seg.length, { readonly: seg.readonly, file: { fd: image.fd, offset: seg.offset } });
        this.#loaded = 'snapshot';
      } else {
        for (const r of ramRanges(memory)) this.vm.setupMemory(r.gpa, r.length);
      }
      this.runner = new VcpuRunner(this.vm, {
        ...(opts.emulate === undefined ? {} : { emulate: opts.emulate }),
        ...(opts.engine === undefined ? {} : { engine: opts.engine }),
      });
      this.devices = attachDevices(this.runner, memory, cpus, {
        serialOut: (b) => opts.serial?.onOutput?.(b),
        debugcon: opts.debugcon,
        debugExit: (status) => {
          opts.onExit?.(status);
          this.#finish({ reason: 'debug-exit', status });
        },
        reset: (kind) => this.#finish({ reason: 'reset', kind }),
        sleep: (typ) => {
          if (typ === S5_SLEEP_TYPE) this.#finish({ reason: 'poweroff' });
        },
      }, { debugExit });
      const vm = this.vm;
      this.pci = new PcPci(this.runner, {
        layout: pciLayout(memory),
        raiseMsi: (lo, hi, data) => vm.raiseMsi(lo, hi, data),
        memoryOverlaps: (gpa, length) => vm.memory.segments.some((s) => gpa < s.gpa + s.length && s.gpa < gpa + length),
      });
      this.virtio = new PcVirtio(vm, this.pci, this.runner);
      if (opts.virtio !== undefined) {
        if (!Array.isArray(opts.virtio)) throw new TypeError('opts.virtio must be an array of VirtioDevice');
        for (const d of opts.virtio) this.virtio.add(d);
      }
      if (opts.traceExits) {
        const trace = opts.traceExits;
        this.runner.on('exit', (e) => void trace(describeExit(e)));
        this.runner.on('emulated', (v, counts) =>
          trace(`vcpu${v} emulated in userspace: ${Object.entries(counts).map(([m, n]) => `${m} ×${n}`).join(', ')}`),
        );
      }
    } catch (e) {
      this.vm.destroy();
      throw e;
    }
  }

  /** Guest-physical memory (RAM and ROM). */
  get memory(): GuestMemory {
    return this.vm.memory;
  }

  /**
   * The MSI sink for PCI functions' MSI-X models (KVM_SIGNAL_MSI through `Vm.raiseMsi`;
   * never throws: bad messages are dropped and counted in `pci.counters`).
   */
  get msi(): MsiSink {
    return this.pci.msi;
  }

  /**
   * Put a PCI function on bus 0 (at `opts.slot` 1-31, else the lowest free device number),
   * place its BARs in the PCI windows and enable decode, as firmware does for a directly
   * booted kernel, and keep each BAR's region registered on the runner's buses wherever the
   * guest moves it. `opts.posted` lists BAR sub-ranges whose writes are posted (see
   * src/platform/pci.ts for what happens when the guest moves such a BAR). Call it before
   * {@link run}. Throws RangeError for a taken slot or BARs that do not fit, TypeError for a
   * bad argument.
   */
  addPciDevice(fn: PciFunction, opts: PcPciDeviceOptions = {}): PcPciDevice {
    if (this.#ran) throw new Error('the machine has already run: add PCI functions before run()');
    return this.pci.add(fn, opts);
  }

  /**
   * Put a virtio device (e.g. `await VirtioBlock.open({ path })`, `new VirtioRng()`,
   * `new VirtioConsole({ output })`, or your own {@link VirtioDevice}) on the PCI bus behind a
   * modern virtio-pci function with MSI-X; queue notifications take `opts.notify`'s path
   * (default: KVM_IOEVENTFD, no exit). Call it before {@link run}.
   */
  addVirtioDevice(device: VirtioDevice, opts: PcVirtioOptions = {}): PcVirtioDevice {
    if (this.#ran) throw new Error('the machine has already run: add virtio devices before run()');
    return this.virtio.add(device, opts);
  }

  /** The result {@link run} resolved to, once it has. */
  get result(): PcRunResult | undefined {
    return this.#result;
  }

  /** Run loader `fn` once per machine; a loader that throws leaves the machine unloaded. */
  #load<T>(what: string, fn: () => T): T {
    if (this.#loaded) throw new Error(`a ${this.#loaded} is already loaded; create a new machine`);
    if (this.#ran) throw new Error('the machine has already run');
    const r = fn();
    this.#loaded = what;
    return r;
  }

  /** Load a BIOS ROM (e.g. SeaBIOS's bios.bin) and start every vCPU from reset. */
  loadFirmware(rom: Uint8Array): FirmwarePlan {
    return this.#load('firmware', () => bootFirmware(this.vm, this.memoryBytes, rom));
  }

  /** Load a Multiboot kernel; vCPU 0 enters it, the other vCPUs wait for INIT/SIPI. */
  loadMultiboot(image: Uint8Array, opts: PcMultibootOptions = {}): MultibootBootState {
    return this.#load('Multiboot kernel', () => bootMultiboot(this.vm, this.memoryBytes, image, opts));
  }

  /** Load a Linux bzImage (64-bit entry, ACPI tables for SMP); the other vCPUs wait for INIT/SIPI. */
  loadLinux(kernel: Uint8Array, opts: PcLinuxOptions = {}): LinuxBootState {
    return this.#load('Linux kernel', () => bootLinux(this.vm, this.memoryBytes, kernel, opts, this.pci.layout));
  }

  /** Copy a flat binary to `at` and enter it on vCPU 0 (real mode unless `opts.mode` says otherwise). */
  loadFlat(image: Uint8Array, at: number, opts: FlatOptions = {}): BootState {
    return this.#load('flat binary', () => bootFlat(this.vm, image, at, opts));
  }

  /** Feed bytes to COM1's receiver (as if typed on the serial line); returns how many were accepted. */
  sendSerial(bytes: Uint8Array | readonly number[]): number {
    return this.devices.uart.receive(bytes);
  }

  /**
   * Run every vCPU until the guest exits (debug-exit, ACPI power-off, reset, triple fault),
   * every vCPU halts with interrupts off, {@link stop} is called or the timeout expires.
   * Rejects with a GuestError when KVM cannot continue the guest (e.g. an emulation failure).
   * A machine runs once.
   */
  async run(opts: PcRunOptions = {}): Promise<PcRunResult> {
    if (this.#ran) throw new Error('the machine has already run');
    if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
    const timeoutMs = opts.timeoutMs;
    if (timeoutMs !== undefined && typeof timeoutMs !== 'number') throw new TypeError(`opts.timeoutMs must be a number, got ${typeof timeoutMs}`);
    if (timeoutMs !== undefined && (!(timeoutMs > 0) || timeoutMs > 2 ** 31 - 1)) {
      throw new RangeError(`opts.timeoutMs must be a positive number of milliseconds, at most 2^31-1, got ${timeoutMs}`);
    }
    this.#ran = true;
    const input = this.#opts.serial?.input;
    const onData = (chunk: Buffer | string): void => void this.sendSerial(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    input?.on('data', onData);
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => this.#finish({ reason: 'timeout' }), timeoutMs);
    let end: RunResult;
    try {
      this.pci.preparePosted();
      end = await this.runner.start();
    } finally {
      clearTimeout(timer);
      input?.removeListener('data', onData);
    }
    this.#result ??= fromRunner(end);
    return this.#result;
  }

  /**
   * The bits of the `cpuid.clear` option that KVM does not offer on this host
   * (KVM_GET_SUPPORTED_CPUID lacks them): clearing them changes nothing KVM controls, and on
   * PVM hosts the guest still sees the host's bit.
   */
  ineffectiveCpuidClears(): (string | CpuidBit)[] {
    return ineffectiveClears(Vm.supportedCpuid(), this.#opts.cpuid?.clear ?? []);
  }

  /**
   * The instructions the runner finished in userspace (KVM's emulator gave up on them), per
   * mnemonic, summed over the vCPUs; empty if none, or once the machine is destroyed.
   */
  emulatedInstructions(): Map<string, bigint> {
    return emulatedTotals(this.vm);
  }

  /** True between {@link pause} and {@link resume}. */
  get paused(): boolean {
    return this.#paused;
  }

  /**
   * Pause the running machine: resolves when no vCPU is inside KVM_RUN (each has finished the
   * instruction of its last exit), every posted write has reached its device and the virtio
   * devices have completed the host I/O they had in flight. Then {@link snapshot}, or read and
   * change state, and {@link resume}.
   */
  async pause(): Promise<void> {
    if (!this.runner.started || this.#result !== undefined) throw new Error('pause(): the machine is not running (call it while run() is pending)');
    if (this.#paused) return;
    await this.runner.pause();
    await this.virtio.quiesce();
    this.#paused = true;
  }

  /** Resume after {@link pause}. */
  resume(): void {
    if (!this.#paused) throw new Error('resume(): the machine is not paused');
    this.#paused = false;
    this.virtio.resume();
    this.runner.resume();
  }

  /**
   * Write a snapshot of the machine to directory `dir` (created if missing; a snapshot already
   * there is replaced, without disturbing VMs restored from it): every vCPU's and the VM's KVM
   * state, every device's state, and guest memory, sparse (see src/snapshot/format.ts). The
   * machine must be paused ({@link pause}), or loaded and not yet run. `opts.meta` is stored
   * as given (JSON) for whoever restores it. Resolves with what was written.
   */
  async snapshot(dir: string, opts: PcSnapshotOptions = {}): Promise<PcSnapshotInfo> {
    if (typeof dir !== 'string' || dir.length === 0) throw new TypeError('dir must be a non-empty path string');
    if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
    const meta = opts.meta ?? {};
    if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) throw new TypeError('opts.meta must be a plain object');
    if (this.#result !== undefined || this.vm.destroyed) throw new Error('snapshot(): the machine has ended');
    if (this.runner.started && !this.#paused) throw new Error('snapshot(): pause() the machine first');
    const started = performance.now();
    mkdirSync(dir, { recursive: true });
    const vcpus = Array.from({ length: this.cpus }, (_, v) => encodeVcpuState(this.vm.saveVcpuState(v)));
    const vm = encodeVmState(this.vm.saveVmState());
    const devices: Record<string, unknown> = {
      platform: pcDevicesState(this.devices),
      pci: this.pci.snapshot(), // every function's, the virtio devices' and their queues' too
    };
    const repair = this.runner.syscallRepairRecord();
    if (repair) devices.syscallRepair = Buffer.from(repair).toString('base64');
    const memory = writeMemoryFile(dir, this.vm.memorySegments().map((s) => ({ ...s, data: this.vm.memoryDataRanges(s.gpa) })));
    const body: SnapshotBody = {
      vmmapi: packageVersion(),
      createdAt: new Date().toISOString(),
      machine: { kind: 'pc', memory: this.memoryBytes, cpus: this.cpus, cpuid: this.cpuidDigest(), options: this.#shape() },
      memory,
      vcpus,
      vm,
      devices,
      meta: JSON.parse(JSON.stringify(meta)) as Record<string, unknown>,
    };
    writeStateFile(dir, body);
    return { dir, format: SNAPSHOT_FORMAT, memoryBytes: memory.bytes, writtenBytes: memory.written, ms: performance.now() - started };
  }

  /** SHA-256 of every vCPU's CPUID table (what a restore must find the same). */
  cpuidDigest(): string {
    const h = createHash('sha256');
    for (let v = 0; v < this.cpus; v++) h.update(JSON.stringify(this.vm.guestCpuid(v)));
    return h.digest('hex');
  }

  /** The creation options that shape the machine, as a snapshot records them. */
  #shape(): Record<string, unknown> {
    const o = this.#opts;
    return {
      cpuid: o.cpuid ?? {},
      debugExit: o.debugExit ?? null,
      debugcon: o.debugcon !== undefined,
      emulate: o.emulate ?? null,
      virtio: this.virtio.devices.map((d) => ({ deviceType: d.device.deviceType, notify: d.notify })),
    };
  }

  /** Stop the machine; {@link run} resolves with `{ reason: 'stopped' }` (unless it already ended). */
  stop(): void {
    this.#finish({ reason: 'stopped' });
  }

  #finish(result: PcRunResult): void {
    this.#result ??= result;
    if (this.runner.started) this.runner.stop();
  }

  /** Stop the vCPUs (if running) and release the VM. */
  destroy(): void {
    this.vm.destroy();
  }
}

function fromRunner(r: RunResult): PcRunResult {
  switch (r.reason) {
    case 'halted':
      return { reason: 'halted' };
    case 'shutdown':
      return { reason: 'triple-fault' };
    case 'system-event':
      return { reason: 'poweroff' };
    default:
      return { reason: 'stopped' };
  }
}

/**
 * Create a PC: the VM (with in-kernel LAPICs, IOAPIC, PIC and PIT), its RAM, the platform
 * devices and a runner. Then load something into it and {@link Pc.run} it.
 *
 * @throws RangeError/TypeError for bad options (one-line messages); KvmError if KVM refuses.
 */
export function createPc(opts: PcOptions): Pc {
  return new Pc(opts);
}
