/** Feature-word helpers for device models (bits numbered as in the virtio specification). */

/** The 64-bit feature word with exactly the given bit numbers set. */
export function featureBits(...bits: number[]): bigint {
  let w = 0n;
  for (const b of bits) w |= 1n << BigInt(b);
  return w;
}

/** True if bit number `bit` is set in `features`. */
export function hasFeature(features: bigint, bit: number): boolean {
  return ((features >> BigInt(bit)) & 1n) === 1n;
}
