/**
 * The host side of virtio-vsock: the {@link VsockBackend} contract between the device and a
 * host backend, and {@link UnixMuxer}, Firecracker's Unix-socket convention.
 * @packageDocumentation
 */
export type { VsockBackend, VsockChannel, VsockHostEnd, VsockConnectHandler, VsockGuestConnector } from './backend.js';
export { UnixMuxer, MUXER_MAX_LINE, MUXER_FIRST_LOCAL_PORT } from './unix-muxer.js';
export type { UnixMuxerOptions, MuxerStats } from './unix-muxer.js';
