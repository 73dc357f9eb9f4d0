/**
 * Virtio device models — virtio-blk, virtio-rng, virtio-console, virtio-net, virtio-vsock — as pure state machines over
 * a {@link VirtioContext}: no KVM, no transport. Pair one with a transport (virtio-pci) to
 * give it to a guest; unit tests drive them with synthetic queues.
 * @packageDocumentation
 */
export { VirtioBlock, BLK_MAX_DISCARD_SECTORS, BLK_MAX_DISCARD_SEG, BLK_DISCARD_SECTOR_ALIGNMENT, BLK_MAX_WRITE_ZEROES_SECTORS, BLK_MAX_WRITE_ZEROES_SEG } from './block.js';
export type { VirtioBlockOptions, BlockStats, VirtioBlockState } from './block.js';
export {
  VIRTIO_BLK_F, VIRTIO_BLK_T, VIRTIO_BLK_S, VIRTIO_BLK_CONFIG, SECTOR_SIZE, BLK_HEADER_BYTES, BLK_RANGE_BYTES,
  VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
} from './block-constants.js';
export { ImageError, ShortReadError, ZERO_CHUNK_BYTES } from './block-io.js';
export type { BlockDropReason, BlockRequest, BlockRange } from './block-request.js';
export { VirtioRng } from './rng.js';
export type { VirtioRngOptions, RngStats, VirtioRngState } from './rng.js';
export { VirtioConsole, VIRTIO_CONSOLE_F, VIRTIO_CONSOLE_CONFIG, VIRTIO_CONSOLE_QUEUE } from './console.js';
export type { VirtioConsoleOptions, ConsoleStats, VirtioConsoleState } from './console.js';
export { VirtioNet } from './net.js';
export type { VirtioNetOptions, NetStats, VirtioNetState, VirtioNetOverrides } from './net.js';
export { VIRTIO_NET_F, VIRTIO_NET_CONFIG, VIRTIO_NET_S, VIRTIO_NET_QUEUE, NET_HDR_BYTES, NET_HDR_NUM_BUFFERS, NET_MTU_RANGE } from './net-constants.js';
export { NetReceiver } from './net-rx.js';
export type { RxOutcome, RxBufferCounters } from './net-rx.js';
export { VirtioVsock, VIRTIO_VSOCK_CONFIG } from './vsock.js';
export type { VirtioVsockOptions, VsockStats, VirtioVsockState, VirtioVsockOverrides } from './vsock.js';
export type { VsockConnState } from './vsock-connection.js';
export {
  VSOCK_HDR_BYTES, VSOCK_HOST_CID, VSOCK_MIN_GUEST_CID, VSOCK_MAX_PAYLOAD, VSOCK_HDR, VSOCK_TYPE, VSOCK_OP, VSOCK_SHUTDOWN,
  VSOCK_EVENT, VSOCK_QUEUE, decodeHeader as decodeVsockHeader, encodeHeader as encodeVsockHeader,
} from './vsock-packet.js';
export type { VsockHeader } from './vsock-packet.js';
export { featureBits, hasFeature } from './features.js';
export type { ConfigAccessSize } from './config-space.js';
export { DeviceCore, checkContext, checkQueueIndex } from './core.js';
export type { ChainHandler } from './core.js';
export { checkDeviceState, checkHeldChains, checkNothingInFlight, checkOverrides } from './state.js';
export type { DeviceStateBase } from './state.js';
