/**
 * Guest-image loaders and firmware-table builders: everything needed to put a kernel,
 * Multiboot image, flat binary or BIOS ROM into guest memory and describe the initial vCPU
 * state, without touching KVM.
 */
export * from './errors.js';
export * from './boot-state.js';
export * from './e820.js';
export * from './acpi.js';
/** The AML encoder behind the DSDT (`boot.aml.device(...)`, `boot.aml.resourceTemplate(...)`, ...). */
export * as aml from './aml.js';
export * from './paging.js';
export * from './elf.js';
export * from './linux.js';
export * from './vmlinux.js';
export * from './lz4.js';
export * from './multiboot.js';
export * from './firmware.js';
export * from './flat.js';
