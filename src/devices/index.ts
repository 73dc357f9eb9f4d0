/**
 * PC platform device emulators: pure state machines implementing {@link Device}, unit
 * testable without KVM.
 */

export * from './device.js';
export * from './io-util.js';
export * from './uart16550.js';
export * from './i8042.js';
export * from './reset-port.js';
export * from './post-port.js';
export * from './cmos.js';
export * from './debug-exit.js';
export * from './debugcon.js';
export * from './fw-cfg.js';
