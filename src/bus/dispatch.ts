/**
 * The one dispatch seam: every path that answers a guest access with a device — the vCPU
 * worker (worker-side devices), the main thread's fast path, the posted-write ring and the
 * general exit handler — calls {@link serveAccess}. It finds the device, turns the address
 * into an offset, runs string I/O element by element, and counts; unclaimed accesses are
 * left to the caller, which answers them with {@link answerUnclaimed} once nobody else will.
 */
import type { Bus } from './bus.js';
import type { AccessSize } from '../devices/device.js';
import { readLE, writeLE } from './le.js';

/**
 * One access a vCPU made. `data` holds `size × count` bytes from `offset` on: the values
 * written, or the place the answer to a read goes (a view straight into kvm_run, or a
 * scratch view for a posted write).
 */
export interface Access {
  /** Port or guest-physical address. */
  addr: number;
  /** Width of one element: 1, 2, 4 or 8 bytes. */
  size: AccessSize;
  /** Elements (greater than 1 for `rep ins` / `rep outs`). */
  count: number;
  /** True for OUT / MMIO write. */
  write: boolean;
  /** Where the data lives. */
  data: DataView;
  /** Byte offset of element 0 in `data`. */
  offset: number;
}

/** A fresh, reusable {@link Access} (callers fill it in place to avoid allocating per exit). */
export function newAccess(): Access {
  return { addr: 0, size: 1, count: 1, write: false, data: new DataView(new ArrayBuffer(8)), offset: 0 };
}

/**
 * Serve `a` with the device `bus` has at `a.addr`. Reads put one device read per element
 * into `a.data` (a `rep ins` from a FIFO sees successive values); writes hand each element
 * to the device. Returns false, touching nothing, when no device claims the address.
 */
export function serveAccess(bus: Bus, a: Access): boolean {
  const r = bus.find(a.addr);
  if (!r) return false;
  const off = a.addr - r.base;
  const dev = r.device;
  const d = a.data;
  const end = a.offset + a.size * a.count;
  if (a.write) {
    bus.counters.writes++;
    for (let at = a.offset; at < end; at += a.size) dev.write(off, a.size, readLE(d, at, a.size));
  } else {
    bus.counters.reads++;
    for (let at = a.offset; at < end; at += a.size) writeLE(d, at, a.size, dev.read(off, a.size));
  }
  return true;
}

/** Answer an access no device claimed: reads get all-ones (as on a PC's bus); both are counted. */
export function answerUnclaimed(bus: Bus, a: Access): void {
  if (a.write) {
    bus.counters.unhandledWrites++;
    return;
  }
  bus.counters.unhandledReads++;
  const end = a.offset + a.size * a.count;
  for (let at = a.offset; at < end; at++) a.data.setUint8(at, 0xff);
}

/** The {@link Access} of a decoded exit's data (a view of the same bytes: answers land in kvm_run). */
export function accessOfBytes(addr: number, size: AccessSize, write: boolean, bytes: Uint8Array): Access {
  return { addr, size, count: Math.floor(bytes.byteLength / size), write, data: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), offset: 0 };
}
