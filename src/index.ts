/**
 * vmmapi: bhyve's libvmmapi on Linux KVM, in TypeScript, with a worker-thread vCPU runner.
 * @packageDocumentation
 */
export { Vm, EventType, X2apicState, vmmGetMemTotal, vmmGetMemFree } from './vm.js';
export type { VmCreateOptions, MemoryOptions, MemoryFile, RunOptions, SegmentDescriptor, VcpuStats } from './vm.js';
export {
  encodeVcpuState, decodeVcpuState, encodeVmState, decodeVmState, checkVcpuState, checkVmState, StateFormatError, MSR_IA32_TSC,
  MSR_IA32_TSC_DEADLINE,
} from './kvm-state.js';
export type {
  KvmVcpuState, KvmVmState, KvmMsr, EncodedVcpuState, EncodedVmState, EncodedSregs, EncodedSegment, StateFormatProblem,
} from './kvm-state.js';
export { Reg } from './registers.js';
export { Capability, capabilityNameToType, capabilityTypeToName } from './capabilities.js';
export { KvmError, NotImplementedError, PassthroughUnavailableError } from './errors.js';
export { GuestMemory, bufferMemory } from './memory/guest-memory.js';
export type { MemorySegment } from './memory/guest-memory.js';
export { GuestMemoryError } from './memory/access.js';
export type { GuestMemoryAccess } from './memory/access.js';
export { decodeExit, setExitValue, describeExit } from './exits.js';
export type {
  VmExit, VmExitKind, InoutExit, MmioExit, HltExit, ShutdownExit, DebugExit, InternalErrorExit, FailEntryExit,
  SystemEventExit, InterruptedExit, ExceptionExit, UnknownExit,
} from './exits.js';
export { CPUID_BITS, guestCpuid, ineffectiveClears } from './cpuid.js';
export type { CpuidBit, CpuidOptions } from './cpuid.js';
export type { CpuidEntry, KvmRegs, KvmSregs, KvmSegment, KvmClockData } from './kvm/structs.js';
export * as kvmConstants from './kvm/constants.js';
export type { Device, IrqLine, AccessSize } from './devices/device.js';
export { VcpuRunner, RunnerBus, hostIsPvm } from './runner/runner.js';
export type { IoEventFd, IoEventFdOptions } from './io-events.js';
export { closeVcpuWorkers, prestartVcpuWorkers } from './runner/worker-pool.js';
export type { RunnerEvents, VcpuRunnerOptions, RegisterOptions, RunResult, RunnerCounters, VcpuState, HandlerResult } from './runner/runner.js';
export { RunnerError, GuestError } from './runner/errors.js';
export type { WorkerDeviceSpec } from './runner/protocol.js';
export { Bus, PioBus, MmioBus } from './bus/bus.js';
export type { BusRange, BusCounters } from './bus/bus.js';
export { RecordingIrqLine } from './devices/device.js';
export { Uart16550, I8042, ResetPort, PostPort, Cmos, DebugExit as IsaDebugExit, Debugcon, FwCfg, buildE820Bytes, FwCfgItem } from './devices/index.js';
export * as devices from './devices/index.js';
export * as boot from './boot/index.js';
export { fixturePath } from './fixtures.js';
export * from './platform/index.js';
export { SnapshotError, SNAPSHOT_FORMAT, SNAPSHOT_VERSION, readStateFile } from './snapshot/format.js';
export { verifyMemoryFile } from './snapshot/memory-file.js';
export { ControlServer } from './control/server.js';
export type { ControlHandler, ControlOutcome, ControlServerOptions } from './control/server.js';
export { ControlClientError, sendControlRequest } from './control/client.js';
export type { ControlClientOptions } from './control/client.js';
export { CONTROL_COMMANDS } from './control/protocol.js';
export type { ControlCommand, ControlReply, ControlRequest } from './control/protocol.js';
export type { SnapshotBody, SnapshotSegment } from './snapshot/format.js';
/** PCI models: configuration space, MSI-X, the bus and its config mechanisms, BAR placement (src/pci). */
export * from './pci/index.js';
/** Virtio 1.x: split virtqueues, the device contract, the virtio-pci transport and the blk/rng/console/vsock devices (src/virtio). */
export * from './virtio/index.js';
/** Network backends for virtio-net: NetBackend, NetSwitch, StreamSocketBackend, TapBackend (src/net). */
export * from './net/index.js';
/** virtio-vsock's host side: the VsockBackend contract and the Firecracker-convention UnixMuxer (src/vsock). */
export * from './vsock/index.js';
