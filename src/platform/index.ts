/**
 * The PC platform: a ready-made machine (RAM, irqchip, legacy devices, a PCI bus, runner)
 * and loaders for firmware, Multiboot, Linux and flat images.
 * @packageDocumentation
 */
export { createPc, describeRunResult, Pc } from './pc.js';
export type { PcOptions, PcSerialOptions, PcRunOptions, PcRunResult, PcSnapshotOptions, PcSnapshotInfo } from './pc.js';
export { restorePc, snapshotDeviceTypes } from './restore.js';
export type { PcRestoreOptions } from './restore.js';
export { pcDevicesState, restorePcDevices } from './device-state.js';
export type { PcDevicesState } from './device-state.js';
export type { AcpiPmState } from './acpi-pm.js';
export type { PcDevices, DevicePorts } from './devices.js';
export type { PortRange } from './options.js';
export type { PcLinuxOptions, PcMultibootOptions } from './loaders.js';
export { DEFAULT_LINUX_CMDLINE } from './loaders.js';
export { applyBootState } from './boot-state.js';
export { AcpiPm, Pm1Cnt } from './acpi-pm.js';
export type { AcpiPmOptions } from './acpi-pm.js';
export { KvmIrqLine } from './irq.js';
export { PcPci } from './pci.js';
export type { PciBusHost, PcPciOptions, PciPostedRange, PcPciDeviceOptions, PcPciDevice, PcPciCounters } from './pci.js';
export * from './layout.js';
export { PcVirtio } from './virtio.js';
export type { PcVirtioDevice, PcVirtioOptions, VirtioNotifyPath } from './virtio.js';
