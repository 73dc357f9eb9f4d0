/** Numbers of virtio-net (virtio 1.2 §5.1): feature bits, configuration layout, header. */

/** Feature bit numbers of the network device (§5.1.3) that vmmapi knows. */
export const VIRTIO_NET_F = {
  /** The device reports its maximum MTU in the configuration space. */
  MTU: 3,
  /** The device has a MAC address in the configuration space. */
  MAC: 5,
  /** The driver can merge receive buffers (num_buffers in the header). */
  MRG_RXBUF: 15,
  /** The configuration status field (link up) is valid. */
  STATUS: 16,
  /** A control queue (not implemented). */
  CTRL_VQ: 17,
} as const;

/** Byte offsets of struct virtio_net_config (the part vmmapi exposes), and its size. */
export const VIRTIO_NET_CONFIG = { MAC: 0, STATUS: 6, MAX_VIRTQUEUE_PAIRS: 8, MTU: 10, SIZE: 12 } as const;

/** Bits of the configuration status field. */
export const VIRTIO_NET_S = { LINK_UP: 1, ANNOUNCE: 2 } as const;

/** Queue indices of the single queue pair. */
export const VIRTIO_NET_QUEUE = { RECEIVE: 0, TRANSMIT: 1 } as const;

/**
 * Bytes of struct virtio_net_hdr as a VERSION_1 device uses it: flags, gso_type, hdr_len,
 * gso_size, csum_start, csum_offset, num_buffers (always present in virtio 1.x).
 */
export const NET_HDR_BYTES = 12;

/** Byte offset of num_buffers (le16) in the header. */
export const NET_HDR_NUM_BUFFERS = 10;

/** The MTU range a device may report (§5.1.4.1: at least 68). */
export const NET_MTU_RANGE = { MIN: 68, MAX: 65535 } as const;
