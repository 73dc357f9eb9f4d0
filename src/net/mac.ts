/** MAC addresses: parsing, formatting, random locally administered ones, and the frame fields. */
import { randomFillSync } from 'node:crypto';

/** Bytes of a MAC address. */
export const MAC_BYTES = 6;

/**
 * Parse a MAC address: a string of six hex byte pairs separated by ':' or '-'
 * ("52:54:00:12:34:56"), or a Uint8Array of 6 bytes (copied). TypeError / RangeError naming
 * `name` otherwise.
 */
export function parseMac(value: unknown, name = 'mac'): Uint8Array {
  if (value instanceof Uint8Array) {
    if (value.length !== MAC_BYTES) throw new RangeError(`${name} must have 6 bytes, got ${value.length}`);
    return Uint8Array.from(value);
  }
  if (typeof value !== 'string') throw new TypeError(`${name} must be a string or a Uint8Array, got ${typeof value}`);
  const m = /^([0-9a-f]{2})([:-])([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})$/i.exec(value);
  if (!m) throw new RangeError(`${name} must look like 52:54:00:12:34:56, got ${JSON.stringify(value)}`);
  return Uint8Array.from([m[1], m[3], m[4], m[5], m[6], m[7]].map((h) => parseInt(h, 16)));
}

/** Format 6 bytes as "xx:xx:xx:xx:xx:xx" (lower case). */
export function formatMac(mac: Uint8Array): string {
  return Array.from(mac.subarray(0, MAC_BYTES), (b) => b.toString(16).padStart(2, '0')).join(':');
}

/** A random unicast, locally administered MAC address (first byte: bit 0 clear, bit 1 set). */
export function randomMac(): Uint8Array {
  const mac = new Uint8Array(MAC_BYTES);
  randomFillSync(mac);
  mac[0] = (mac[0] & 0xfc) | 0x02;
  return mac;
}

/** True if the MAC at `offset` of `bytes` is a group (multicast or broadcast) address. */
export function isGroupMac(bytes: Uint8Array, offset = 0): boolean {
  return (bytes[offset] & 1) === 1;
}

/** The 48-bit MAC at `offset` of `bytes` as a number (a map key). */
export function macKey(bytes: Uint8Array, offset = 0): number {
  let k = 0;
  for (let i = 0; i < MAC_BYTES; i++) k = k * 256 + bytes[offset + i];
  return k;
}
