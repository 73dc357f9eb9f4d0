/** Little-endian reads and writes of 1-, 2-, 4- and 8-byte values in a kvm_run view. */

/** Read an n-byte little-endian value (a number up to 4 bytes, a bigint for 8). */
export function readLE(v: DataView, off: number, n: number): number | bigint {
  return n === 1 ? v.getUint8(off) : n === 2 ? v.getUint16(off, true) : n === 4 ? v.getUint32(off, true) : v.getBigUint64(off, true);
}

/** Write an n-byte little-endian value. */
export function writeLE(v: DataView, off: number, n: number, value: number | bigint): void {
  if (n === 8) v.setBigUint64(off, BigInt.asUintN(64, BigInt(value)), true);
  else {
    const x = typeof value === 'bigint' ? Number(BigInt.asUintN(32, value)) : value;
    if (n === 1) v.setUint8(off, x & 0xff);
    else if (n === 2) v.setUint16(off, x & 0xffff, true);
    else v.setUint32(off, x >>> 0, true);
  }
}

