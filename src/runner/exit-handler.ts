/**
 * What an exit means, decided in one place: a pure function of the exit, the buses and the
 * listeners, returning what the runner must do next. Unit tests drive it with made-up exits
 * and no KVM (Firecracker's `handle_kvm_exit` is tested the same way).
 *
 * Port I/O and MMIO go to the dispatch seam (src/bus/dispatch.ts); what no device claims
 * goes to the 'inout' / 'mmio' listeners, and what nobody answers reads all-ones and is
 * reported as 'unhandled'.
 */
import type { EventEmitter } from 'eventemitter3';
import type { Bus } from '../bus/bus.js';
import { accessOfBytes, answerUnclaimed, serveAccess, type Access } from '../bus/dispatch.js';
import { peekAccess, type InoutExit, type MmioExit, type VmExit } from '../exits.js';
import { readLE } from '../bus/le.js';
import { GuestError } from './errors.js';
import { RING_SPACE, type WriteRing } from './write-ring.js';
import type { HandlerResult, RunnerEvents } from './types.js';

/** What the exit handler needs: the buses, the listeners, and the counter of unclaimed accesses. */
export interface ExitContext {
  readonly pio: Bus;
  readonly mmio: Bus;
  /** The emitter whose listeners handle exits (the runner). */
  readonly events: EventEmitter<RunnerEvents>;
  /** Accesses that no device and no listener claimed (the handler increments it). */
  readonly counters: { unhandled: number };
}

/** What the runner does after an exit. */
export type ExitAction =
  | { readonly kind: 'continue' }
  /** This vCPU halted for good (a HLT exit): it finishes, the others run on. */
  | { readonly kind: 'halt' }
  /** The guest ended the run (triple fault, or a shutdown/reset request): every vCPU stops. */
  | { readonly kind: 'end'; readonly reason: 'shutdown' | 'system-event' }
  /** The guest cannot continue: every vCPU stops and start() rejects with `error`. */
  | { readonly kind: 'fail'; readonly error: Error };

const CONTINUE: ExitAction = Object.freeze({ kind: 'continue' });
const HALT: ExitAction = Object.freeze({ kind: 'halt' });

/**
 * Call every listener of `event` with `exit`; await the promises they return. Returns false
 * if there were none. A listener that throws (or rejects) makes this reject.
 */
export async function callListeners(events: EventEmitter<RunnerEvents>, event: keyof RunnerEvents, exit: VmExit): Promise<boolean> {
  const ls = events.listeners(event) as ((e: VmExit) => HandlerResult)[];
  if (ls.length === 0) return false;
  let pending: Promise<void>[] | undefined;
  for (const l of ls) {
    const r = l.call(events, exit);
    if (r && typeof (r as Promise<void>).then === 'function') (pending ??= []).push(r as Promise<void>);
  }
  if (pending) await Promise.all(pending);
  return true;
}

/** Decide and carry out what `exit` means. Rejects if a listener throws. */
export async function handleExit(exit: VmExit, ctx: ExitContext): Promise<ExitAction> {
  await callListeners(ctx.events, 'exit', exit);
  switch (exit.kind) {
    case 'inout':
      await serveIoExit(exit, ctx.pio, accessOfBytes(exit.port, exit.bytes, !exit.in, exit.data), ctx);
      return CONTINUE;
    case 'mmio':
      await serveIoExit(exit, ctx.mmio, accessOfBytes(exit.gpa, exit.bytes, exit.write, exit.data), ctx);
      return CONTINUE;
    case 'debug':
      await callListeners(ctx.events, 'debug', exit);
      return CONTINUE;
    case 'interrupted':
      return CONTINUE;
    case 'hlt':
      await callListeners(ctx.events, 'hlt', exit);
      return HALT;
    case 'shutdown':
    case 'system-event':
      await callListeners(ctx.events, exit.kind, exit);
      return { kind: 'end', reason: exit.kind };
    case 'internal-error':
      await callListeners(ctx.events, 'internal-error', exit);
      return { kind: 'fail', error: new GuestError(exit) };
    default:
      return { kind: 'fail', error: new GuestError(exit) };
  }
}

async function serveIoExit(exit: InoutExit | MmioExit, bus: Bus, a: Access, ctx: ExitContext): Promise<void> {
  if (serveAccess(bus, a)) return;
  answerUnclaimed(bus, a);
  if (await callListeners(ctx.events, exit.kind, exit)) return;
  ctx.counters.unhandled++;
  ctx.events.emit('unhandled', exit);
}

/**
 * The synchronous shortcut for the common exit — port I/O or MMIO in `view` (kvm_run, of
 * `runLength` bytes) claimed by a device, nobody observing 'exit' — with the same outcome as
 * {@link handleExit} but no exit object. Returns false when the exit needs handleExit.
 * `scratch` is reused for the access.
 */
export function handleClaimedIo(view: DataView, runLength: number, ctx: ExitContext, scratch: Access): boolean {
  const space = peekAccess(view, runLength, scratch);
  return space !== undefined && handleClaimedAccess(space, scratch, ctx);
}

/**
 * The same shortcut for an access already peeked (the worker forwards single-element
 * accesses inline in the control block): serve it if a device claims it and nobody
 * observes 'exit'; false when it needs {@link handleExit}.
 */
export function handleClaimedAccess(space: 'pio' | 'mmio', a: Access, ctx: ExitContext): boolean {
  return ctx.events.listenerCount('exit') === 0 && serveAccess(space === 'pio' ? ctx.pio : ctx.mmio, a);
}

/**
 * Deliver the posted writes waiting in `ring` for vCPU `vcpu`, oldest first. Each goes
 * straight to its device through the seam while nobody observes 'exit'; otherwise (or if
 * its device is gone) it becomes an exit for {@link handleExit}. Each entry leaves the ring
 * once delivered, so a write is never delivered twice. `scratch` must own an 8-byte buffer.
 */
export async function deliverPostedWrites(ring: WriteRing, vcpu: number, ctx: ExitContext, scratch: Access): Promise<void> {
  for (let space = ring.peek(scratch); space !== 0; space = ring.peek(scratch)) {
    const bus = space === RING_SPACE.PIO ? ctx.pio : ctx.mmio;
    if (ctx.events.listenerCount('exit') !== 0 || !serveAccess(bus, scratch)) {
      await handleExit(postedWriteExit(space, vcpu, scratch), ctx);
    }
    ring.consume();
  }
}

/**
 * The synchronous shortcut of {@link deliverPostedWrites}: deliver, oldest first, the posted
 * writes that a device claims while nobody observes 'exit'. Returns true once the ring is
 * empty, false when the next entry needs deliverPostedWrites (it stays in the ring).
 */
export function deliverClaimedPostedWrites(ring: WriteRing, ctx: ExitContext, scratch: Access): boolean {
  if (ctx.events.listenerCount('exit') !== 0) return ring.pending() === 0;
  for (let space = ring.peek(scratch); space !== 0; space = ring.peek(scratch)) {
    if (!serveAccess(space === RING_SPACE.PIO ? ctx.pio : ctx.mmio, scratch)) return false;
    ring.consume();
  }
  return true;
}

/** The exit object of a posted write (its data a copy, not the scratch buffer). */
function postedWriteExit(space: number, vcpu: number, a: Access): InoutExit | MmioExit {
  const data = new Uint8Array(a.data.buffer.slice(a.data.byteOffset + a.offset, a.data.byteOffset + a.offset + a.size));
  return accessExit(space === RING_SPACE.PIO ? 'pio' : 'mmio', vcpu, a, data);
}

/**
 * The exit object of a single-element access `a` described outside kvm_run (a posted write,
 * an access the worker forwarded inline, one the CPL0 engine made): `data` holds the
 * element (a write's value; where a read's answer goes).
 */
export function accessExit(space: 'pio' | 'mmio', vcpu: number, a: Access, data: Uint8Array): InoutExit | MmioExit {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (space === 'pio') {
    return { kind: 'inout', vcpu, port: a.addr, bytes: a.size as 1 | 2 | 4, in: !a.write, count: 1, value: a.write ? Number(readLE(dv, 0, a.size)) : 0, data };
  }
  return { kind: 'mmio', vcpu, gpa: a.addr, bytes: a.size, write: a.write, value: a.write ? BigInt.asUintN(64, BigInt(readLE(dv, 0, a.size))) : 0n, data };
}
