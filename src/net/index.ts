/**
 * Network backends for virtio-net: the {@link NetBackend} contract, an in-process learning
 * switch ({@link NetSwitch}), QEMU's length-prefixed stream protocol over a Unix socket
 * ({@link StreamSocketBackend}, e.g. to passt), and an existing TAP interface
 * ({@link TapBackend}); plus frame limits, a bounded frame queue and MAC helpers.
 * @packageDocumentation
 */
export { checkBackend } from './backend.js';
export type { NetBackend } from './backend.js';
export { FrameQueue, MIN_FRAME_BYTES, MAX_FRAME_BYTES, validFrameLength } from './frame.js';
export type { FrameQueueLimits } from './frame.js';
export { MAC_BYTES, parseMac, formatMac, randomMac, isGroupMac, macKey } from './mac.js';
export { NetSwitch } from './switch.js';
export type { NetSwitchOptions, NetSwitchStats, NetSwitchPort } from './switch.js';
export { StreamSocketBackend, StreamFrameDecoder, encodeStreamFrame, STREAM_LENGTH_BYTES } from './stream.js';
export type { StreamSocketOptions, StreamSocketStats, StreamDecoderStats } from './stream.js';
export { TapBackend } from './tap.js';
export type { TapBackendOptions, TapStats } from './tap.js';
