/**
 * The virtio-vsock packet header (virtio 1.2 §5.10.6): 44 little-endian bytes in front of
 * every packet on the rx and tx queues, and the constants that go in it.
 */

/** Bytes of struct virtio_vsock_hdr. */
export const VSOCK_HDR_BYTES = 44;

/** The CID of the host (the device's own address). */
export const VSOCK_HOST_CID = 2;

/** The smallest CID a guest may have (0, 1 and 2 are reserved). */
export const VSOCK_MIN_GUEST_CID = 3;

/** The most payload bytes one packet may carry, either way (larger guest packets are reset). */
export const VSOCK_MAX_PAYLOAD = 64 * 1024;

/** Byte offsets of the header's fields. */
export const VSOCK_HDR = {
  SRC_CID: 0, DST_CID: 8, SRC_PORT: 16, DST_PORT: 20, LEN: 24, TYPE: 28, OP: 30, FLAGS: 32, BUF_ALLOC: 36, FWD_CNT: 40,
} as const;

/** Socket types (`type`); only STREAM is implemented (no VIRTIO_VSOCK_F_SEQPACKET). */
export const VSOCK_TYPE = { STREAM: 1, SEQPACKET: 2 } as const;

/** Operations (`op`). */
export const VSOCK_OP = {
  INVALID: 0, REQUEST: 1, RESPONSE: 2, RST: 3, SHUTDOWN: 4, RW: 5, CREDIT_UPDATE: 6, CREDIT_REQUEST: 7,
} as const;

/** SHUTDOWN flags: the sender will receive no more (RCV) / send no more (SEND). */
export const VSOCK_SHUTDOWN = { RCV: 1, SEND: 2 } as const;

/** Event ids on the event queue (struct virtio_vsock_event: one le32). */
export const VSOCK_EVENT = { TRANSPORT_RESET: 0 } as const;

/** Queue indices. */
export const VSOCK_QUEUE = { RX: 0, TX: 1, EVENT: 2 } as const;

/** A decoded packet header. CIDs are numbers: the device only ever compares them with small CIDs. */
export interface VsockHeader {
  srcCid: number;
  dstCid: number;
  srcPort: number;
  dstPort: number;
  len: number;
  type: number;
  op: number;
  flags: number;
  bufAlloc: number;
  fwdCnt: number;
}

/** A CID above 2^53 cannot be a valid one; it decodes as this (never equal to a guest CID). */
const HUGE_CID = Number.MAX_SAFE_INTEGER;

function cid(v: DataView, at: number): number {
  const c = v.getBigUint64(at, true);
  return c > BigInt(Number.MAX_SAFE_INTEGER) ? HUGE_CID : Number(c);
}

/** Decode the first 44 bytes of `bytes` (RangeError if shorter). */
export function decodeHeader(bytes: Uint8Array): VsockHeader {
  if (bytes.length < VSOCK_HDR_BYTES) throw new RangeError(`bytes must hold at least ${VSOCK_HDR_BYTES} bytes, got ${bytes.length}`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, VSOCK_HDR_BYTES);
  return {
    srcCid: cid(v, VSOCK_HDR.SRC_CID),
    dstCid: cid(v, VSOCK_HDR.DST_CID),
    srcPort: v.getUint32(VSOCK_HDR.SRC_PORT, true),
    dstPort: v.getUint32(VSOCK_HDR.DST_PORT, true),
    len: v.getUint32(VSOCK_HDR.LEN, true),
    type: v.getUint16(VSOCK_HDR.TYPE, true),
    op: v.getUint16(VSOCK_HDR.OP, true),
    flags: v.getUint32(VSOCK_HDR.FLAGS, true),
    bufAlloc: v.getUint32(VSOCK_HDR.BUF_ALLOC, true),
    fwdCnt: v.getUint32(VSOCK_HDR.FWD_CNT, true),
  };
}

/** Encode `h` into a new 44-byte array (u32 fields taken modulo 2^32). */
export function encodeHeader(h: VsockHeader): Uint8Array {
  const out = new Uint8Array(VSOCK_HDR_BYTES);
  const v = new DataView(out.buffer);
  v.setBigUint64(VSOCK_HDR.SRC_CID, BigInt(h.srcCid), true);
  v.setBigUint64(VSOCK_HDR.DST_CID, BigInt(h.dstCid), true);
  v.setUint32(VSOCK_HDR.SRC_PORT, h.srcPort >>> 0, true);
  v.setUint32(VSOCK_HDR.DST_PORT, h.dstPort >>> 0, true);
  v.setUint32(VSOCK_HDR.LEN, h.len >>> 0, true);
  v.setUint16(VSOCK_HDR.TYPE, h.type, true);
  v.setUint16(VSOCK_HDR.OP, h.op, true);
  v.setUint32(VSOCK_HDR.FLAGS, h.flags >>> 0, true);
  v.setUint32(VSOCK_HDR.BUF_ALLOC, h.bufAlloc >>> 0, true);
  v.setUint32(VSOCK_HDR.FWD_CNT, h.fwdCnt >>> 0, true);
  return out;
}
