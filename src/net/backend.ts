/**
 * The contract between a network device model (virtio-net) and what carries its frames
 * outside the guest: an in-process switch, a stream socket, a TAP interface.
 *
 * Frames are whole Ethernet frames without virtio header or FCS. Ownership passes with a
 * frame: the sender does not touch an array after handing it over, and the receiver treats
 * it as read-only (a switch may hand the same array to several ports).
 */

/** Something that carries Ethernet frames between a device and the outside. */
export interface NetBackend {
  /**
   * Send `frame` (from the VMM to the outside). Never blocks and never throws for I/O
   * trouble: a backend that cannot take the frame now drops and counts it.
   */
  send(frame: Uint8Array): void;
  /**
   * Set the receiver of frames from the outside (called on the main thread's event loop),
   * replacing any earlier one; `undefined` detaches it (frames are then dropped).
   */
  onFrame(cb: ((frame: Uint8Array) => void) | undefined): void;
  /** Release the backend (sockets, fds, switch port); idempotent. Later sends are dropped. */
  close(): void;
}

/** Check that `value` looks like a {@link NetBackend} (TypeError naming `name`). */
export function checkBackend(value: unknown, name = 'backend'): NetBackend {
  if (typeof value !== 'object' || value === null) throw new TypeError(`${name} must be a NetBackend object`);
  const b = value as Partial<NetBackend>;
  for (const f of ['send', 'onFrame', 'close'] as const) {
    if (typeof b[f] !== 'function') throw new TypeError(`${name}.${f} must be a function`);
  }
  return value as NetBackend;
}
