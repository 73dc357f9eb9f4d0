/** virtio-blk constants (virtio 1.2 §5.2): feature bits, request types, status codes, config layout. */

/** Feature bit numbers of the block device (§5.2.3). */
export const VIRTIO_BLK_F = {
  /** size_max is valid: the largest segment. */
  SIZE_MAX: 1,
  /** seg_max is valid: the most data segments per request. */
  SEG_MAX: 2,
  /** geometry is valid. */
  GEOMETRY: 4,
  /** The device is read-only. */
  RO: 5,
  /** blk_size is valid. */
  BLK_SIZE: 6,
  /** VIRTIO_BLK_T_FLUSH is supported (a writeback cache). */
  FLUSH: 9,
  /** topology is valid. */
  TOPOLOGY: 10,
  /** writeback can be toggled. */
  CONFIG_WCE: 11,
  /** More than one request queue. */
  MQ: 12,
  /** VIRTIO_BLK_T_DISCARD is supported. */
  DISCARD: 13,
  /** VIRTIO_BLK_T_WRITE_ZEROES is supported. */
  WRITE_ZEROES: 14,
  /** VIRTIO_BLK_T_GET_LIFETIME is supported. */
  LIFETIME: 15,
  /** VIRTIO_BLK_T_SECURE_ERASE is supported. */
  SECURE_ERASE: 16,
  /** A zoned block device. */
  ZONED: 17,
} as const;

/** Request types (the `type` field of struct virtio_blk_req, §5.2.6). */
export const VIRTIO_BLK_T = {
  /** Read sectors into the device-writable data. */
  IN: 0,
  /** Write the device-readable data to sectors. */
  OUT: 1,
  /** Make completed writes stable. */
  FLUSH: 4,
  /** Fetch the 20-byte device ID string. */
  GET_ID: 8,
  /** Fetch storage lifetime information. */
  GET_LIFETIME: 10,
  /** Discard sector ranges. */
  DISCARD: 11,
  /** Zero sector ranges. */
  WRITE_ZEROES: 13,
  /** Securely erase sector ranges. */
  SECURE_ERASE: 14,
} as const;

/** Request status codes (the final status byte). */
export const VIRTIO_BLK_S = {
  /** Success. */
  OK: 0,
  /** Device or driver error. */
  IOERR: 1,
  /** Request type (or flag) not supported. */
  UNSUPP: 2,
} as const;

/** The protocol's sector size: `sector` and `capacity` count 512-byte units. */
export const SECTOR_SIZE = 512;
/** Bytes of the request header: le32 type, le32 reserved, le64 sector. */
export const BLK_HEADER_BYTES = 16;
/** Bytes of the device ID string of VIRTIO_BLK_T_GET_ID (NUL-padded, no terminator at 20). */
export const VIRTIO_BLK_ID_BYTES = 20;
/** Bytes of one discard / write-zeroes segment: le64 sector, le32 num_sectors, le32 flags. */
export const BLK_RANGE_BYTES = 16;
/** The `unmap` flag of a discard / write-zeroes segment (the only defined flag). */
export const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP = 1;

/** Byte offsets of struct virtio_blk_config fields (§5.2.4), and the size vmmapi exposes. */
export const VIRTIO_BLK_CONFIG = {
  /** le64: size in 512-byte sectors. */
  CAPACITY: 0,
  /** le32: largest segment, bytes. */
  SIZE_MAX: 8,
  /** le32: most data segments per request. */
  SEG_MAX: 12,
  /** le16 cylinders, u8 heads, u8 sectors. */
  GEOMETRY: 16,
  /** le32: optimal block size, bytes. */
  BLK_SIZE: 20,
  /** u8 physical_block_exp, u8 alignment_offset, le16 min_io_size, le32 opt_io_size. */
  TOPOLOGY: 24,
  /** u8: cache mode (CONFIG_WCE). */
  WRITEBACK: 32,
  /** le16: request queues (MQ). */
  NUM_QUEUES: 34,
  /** le32: most sectors per discard segment. */
  MAX_DISCARD_SECTORS: 36,
  /** le32: most segments per discard request. */
  MAX_DISCARD_SEG: 40,
  /** le32: discard alignment, sectors. */
  DISCARD_SECTOR_ALIGNMENT: 44,
  /** le32: most sectors per write-zeroes segment. */
  MAX_WRITE_ZEROES_SECTORS: 48,
  /** le32: most segments per write-zeroes request. */
  MAX_WRITE_ZEROES_SEG: 52,
  /** u8: write zeroes may deallocate. */
  WRITE_ZEROES_MAY_UNMAP: 56,
  /** The bytes vmmapi's device exposes: through unused1 (no secure-erase or zoned fields). */
  SIZE: 60,
} as const;
