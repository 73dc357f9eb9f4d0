/**
 * The PCI bus as pure models (no KVM): configuration space, MSI-X, the bus with its host
 * bridge and config mechanisms (0xcf8/0xcfc and ECAM), and a BAR allocator. The platform
 * registers the config devices on its buses, moves each BAR's {@link barDevice} when the
 * config space reports a mapping change, and backs {@link MsiSink} with KVM_SIGNAL_MSI.
 */

/** Configuration-space numbers: sizes, header register offsets, command and status bits. */
export * from './registers.js';
/** Configuration space: header masks, BARs, capability lists. */
export * from './config-space.js';
/** MSI-X capability, vector table, PBA and the {@link MsiSink} delivery interface. */
export * from './msix.js';
/** The bus (32 devices × 8 functions), the {@link PciFunction} contract and {@link barDevice}. */
export * from './bus.js';
/** Host bridge function and the config mechanisms {@link PciConfigIo} and {@link PciEcam}. */
export * from './host-bridge.js';
/** BAR placement in MMIO and I/O windows. */
export * from './bar-allocator.js';
/** Checks and encodings for restoring snapshot state (hostile input). */
export * from './state-check.js';
