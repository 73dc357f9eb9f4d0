/**
 * The host side of virtio-vsock: what the device ({@link VirtioVsock}) and a host backend
 * (such as {@link UnixMuxer}) exchange for each stream connection.
 *
 * The device hands the backend a {@link VsockChannel} (its end of one connection); the
 * backend hands the device a {@link VsockHostEnd} (the host's end). Data never piles up
 * without bound on either side: each direction is stream-like, with a boolean "keep going"
 * answer and a callback when it is worth writing again.
 */

/** The device's end of one connection, as the backend uses it. */
export interface VsockChannel {
  /** The host-side port (the device's local port). */
  readonly hostPort: number;
  /** The guest-side port. */
  readonly guestPort: number;
  /**
   * Host→guest bytes. They are always taken (the caller's array may be reused afterwards);
   * false means the device holds as much as the guest's credit (or its own limit) allows:
   * stop writing until {@link VsockHostEnd.drain}. Ignored once the connection is closed.
   */
  write(bytes: Uint8Array): boolean;
  /** The host end can take guest data again after {@link VsockHostEnd.data} returned false. */
  resume(): void;
  /** The host will send no more: once the queued data is out, the device shuts the connection down. */
  end(): void;
  /** Abort the connection: the device resets it (RST) and forgets it. Idempotent. */
  close(): void;
}

/** The host's end of one connection, as the device drives it. */
export interface VsockHostEnd {
  /**
   * Guest→host bytes (a fresh array the host may keep). Return false to have the device stop
   * delivering until {@link VsockChannel.resume}; the guest's credit then runs out and it
   * waits, instead of the host buffering.
   */
  data(bytes: Uint8Array): boolean;
  /** The guest will send no more (SHUTDOWN with the SEND flag). */
  end(): void;
  /** The connection is gone (guest RST, timeout, protocol violation, device reset); `reason` says which. Called once. */
  close(reason: string): void;
  /** A host-initiated connection was accepted by the guest (RESPONSE). */
  connected?(): void;
  /** The device can take host→guest bytes again after {@link VsockChannel.write} returned false. */
  drain?(): void;
}

/**
 * What the device calls when the guest connects to host port `port`: resolve to the host
 * end to accept (the device answers RESPONSE) or to undefined to refuse (RST). A rejected
 * promise or a throw refuses too. `channel` is valid from this call on.
 */
export type VsockConnectHandler = (port: number, channel: VsockChannel) => VsockHostEnd | undefined | Promise<VsockHostEnd | undefined>;

/** The host-initiated side the device offers a backend: open a connection to a guest port. */
export interface VsockGuestConnector {
  /**
   * Send REQUEST from host port `hostPort` to guest port `guestPort`; `end` hears
   * `connected()` on RESPONSE or `close(reason)` on RST or timeout. Error if the device is
   * not serving, the pair is in use or the connection table is full.
   */
  connectToGuest(guestPort: number, hostPort: number, end: VsockHostEnd): VsockChannel;
  /** True if host port `hostPort` has a connection (any guest port). */
  hostPortInUse(hostPort: number): boolean;
}

/** A host backend for {@link VirtioVsock}. */
export interface VsockBackend {
  /** Guest-initiated connections. */
  readonly connect: VsockConnectHandler;
  /** Called once by the device's constructor, so the backend can open connections to the guest. */
  attach?(device: VsockGuestConnector): void;
}
