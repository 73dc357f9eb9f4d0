/**
 * The error every boot-image loader throws when the image it was given is unusable:
 * truncated, wrong magic, inconsistent offsets, segments that do not fit guest memory.
 *
 * Loaders treat their input images as hostile; anything wrong with an image is reported as
 * a {@link BootImageError} with a one-line message naming the image ("kernel", "initrd",
 * "firmware", ...) and what is wrong with it. Misuse by the host program (wrong argument
 * types, impossible options) is reported as TypeError or RangeError instead.
 */

/** Thrown when a boot image (kernel, initrd, firmware, flat binary) is malformed or does not fit. */
export class BootImageError extends Error {
  /** Which image was rejected, e.g. `'kernel'` or `'initrd'`. */
  readonly image: string;
  /**
   * @param image Which image is wrong, used as the message prefix.
   * @param problem What is wrong with it, one line.
   */
  constructor(image: string, problem: string) {
    super(`${image}: ${problem}`);
    this.name = 'BootImageError';
    this.image = image;
  }
}
