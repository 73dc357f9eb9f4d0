/**
 * The shared-memory protocol between the main thread and a vCPU worker: one Int32Array
 * control block per vCPU (in a SharedArrayBuffer), holding a mailbox for exits that need
 * the main thread, control words, and the posted-write ring (src/runner/write-ring.ts).
 *
 * Wake-ups: a worker rings the runner's doorbell ({@link BELL}) for anything the main thread
 * must look at; the main thread re-reads every control block after every wake, since a late
 * notify from an earlier round can wake it early.
 */
import { ringWords, type RingLayout } from './write-ring.js';

/**
 * Indices (in Int32 units) of a vCPU's control block. The first 64-byte line holds what both
 * threads touch on every hand-off (the mailbox, with the access inline); the worker's
 * counters have a line of their own; the posted-write ring follows.
 */
export const CB = {
  /** Mailbox state: {@link MAILBOX}. */
  STATE: 0,
  /** What the waiting request is: {@link REQUEST}. */
  REQUEST: 1,
  /** Main's answer to the request: {@link REPLY} bits. */
  REPLY: 2,
  /** 1 while the worker sleeps waiting for its answer (only then does the main thread notify). */
  WORKER_SLEEPING: 3,
  /** An ACCESS request: address space ({@link ACCESS_SPACE}) | size << 8 | write << 16. */
  ACCESS: 4,
  /** An ACCESS request's address, low and high 32 bits. */
  ACCESS_ADDR_LO: 5,
  ACCESS_ADDR_HI: 6,
  /** An ACCESS request's value (8 bytes, little-endian; 8-byte aligned): written, or the answer. */
  ACCESS_VALUE: 8,
  /** Main → worker request: {@link CONTROL}. */
  CONTROL: 10,
  /** Worker status: {@link STATUS}. */
  STATUS: 11,
  /** Main sets 1 to ask the worker whether its vCPU halted for good. */
  CHECK_HALT: 12,
  /** Posted-write ring: next entry the main thread consumes. */
  RING_HEAD: 13,
  /** Posted-write ring: next entry the worker produces. */
  RING_TAIL: 14,
  /** Counters kept by the worker. */
  EXITS: 16,
  WORKER_HANDLED: 17,
  POSTED_WRITES: 18,
  HOPS: 19,
  EMULATED: 20,
  /** First Int32 of the posted-write ring. */
  RING: 32,
} as const;

/** Address spaces of an ACCESS request. */
export const ACCESS_SPACE = { PIO: 1, MMIO: 2 } as const;

/**
 * The runner's doorbell, one Int32Array shared by the main thread and every vCPU worker of
 * a runner: a worker rings it (bumps SEQ, notifies) for anything the main thread must look
 * at, so one serve loop waits for all vCPUs at once.
 */
export const BELL = {
  /** Bumped for every event the main thread must see. */
  SEQ: 0,
  /** How the main thread waits: {@link MAIN_WAIT}. Workers notify only a waiting main thread. */
  MAIN_SLEEPING: 1,
  /**
   * 1 while the main thread polls the posted-write rings (every {@link RING_POLL_MS}): a
   * worker then posts without ringing, until {@link RING_POLL_BATCH} writes are pending.
   */
  MAIN_POLLING: 2,
} as const;

/**
 * The main thread's wait states. A worker notifies the doorbell only when the main thread
 * waits (a notify costs over a microsecond here, a spinning main thread sees the bump
 * anyway); a single posted write wakes only an ASLEEP one (a BLOCKED one wakes within its
 * short timeout, and batching the writes is the point of posting them).
 */
export const MAIN_WAIT = { AWAKE: 0, ASLEEP: 1, BLOCKED: 2 } as const;
/** Bytes of the doorbell. */
export const BELL_BYTES = 12;

/** Mailbox states: a request is WAITING for the main thread until it is ANSWERED. */
export const MAILBOX = { IDLE: 0, WAITING: 1, ANSWERED: 2 } as const;
/** Control requests. */
export const CONTROL = { RUN: 0, PAUSE: 1, STOP: 2 } as const;
/** Worker statuses. */
export const STATUS = { STARTING: 0, RUNNING: 1, PAUSED: 2, FINISHED: 3 } as const;
/**
 * What a mailbox request carries: an exit to decode from kvm_run; a single-element port or
 * MMIO access described inline in the control block (the main thread then need not touch
 * kvm_run); or why the blocked vCPU cannot wake.
 */
export const REQUEST = { EXIT: 0, HALTED: 1, PARKED: 2, ACCESS: 3 } as const;
/** Reply bits: STOP the vCPU; INLINE: the answer to an ACCESS read is in ACCESS_VALUE (else in kvm_run). */
export const REPLY = { CONTINUE: 0, STOP: 1, INLINE: 2 } as const;

/** Posted-write ring entries per vCPU (a power of two). */
export const RING_CAPACITY = 1024;
/**
 * The worker wakes a main thread that is awake (spinning or busy) only once this many posted
 * writes are pending; a sleeping one it wakes at the first.
 */
export const RING_BATCH = 64;
/**
 * While posted writes keep coming, the main thread stops waiting for doorbells about them
 * and polls the rings this often (ms) instead: a stream of posted writes then costs the
 * vCPU neither a doorbell per write nor a peer thread taking its CPU for each one (on a busy
 * host that peer runs on the vCPU's CPU). A posted write is delivered within about this long;
 * a request of the same vCPU delivers every earlier write first, as always.
 */
export const RING_POLL_MS = 1;
/** While the main thread polls, a worker still rings once this many posted writes are pending. */
export const RING_POLL_BATCH = 512;
/** Where the posted-write ring lives in the control block. */
export const RING_LAYOUT: RingLayout = { head: CB.RING_HEAD, tail: CB.RING_TAIL, base: CB.RING, capacity: RING_CAPACITY };

/** Bytes of one vCPU's control block. */
export const CONTROL_BLOCK_BYTES = (CB.RING + ringWords(RING_CAPACITY)) * 4;

/** A device that runs inside the vCPU worker: loaded there by module path and export name. */
export interface WorkerDeviceSpec {
  /** Absolute path or file: URL of an ES module. */
  module: string;
  /** The exported class; constructed as `new Cls(options)` once per vCPU worker. */
  export: string;
  /** Structured-cloneable constructor options. */
  options?: unknown;
}

/** A worker device's place on a bus. */
export interface WorkerDeviceRange extends WorkerDeviceSpec {
  space: 'pio' | 'mmio';
  base: number;
  length: number;
}

/** Cells of {@link VcpuTask.engineCounts}: turns the vCPU spent in the engine, instructions it retired there. */
export const ENGINE_COUNT = { TURNS: 0, INSTRUCTIONS: 1 } as const;

/** Who runs a vCPU's ring-0 code: `'kvm'` (always), or `'cpl0'`: vmmapi's engine while in 64-bit ring 0. */
export type EngineChoice = 'kvm' | 'cpl0';

/** What the main thread hands a vCPU worker. */
export interface VcpuTask {
  vcpu: number;
  /** vCPU fd number (adopted by the worker). */
  fd: number;
  /** Host CPU to pin the worker thread to, or -1. */
  pin: number;
  /** This vCPU's control block. */
  control: SharedArrayBuffer;
  /** The runner's doorbell ({@link BELL}). */
  bell: SharedArrayBuffer;
  /** The host-load flag (src/runner/host-load.ts): 1 while spinning may pay. */
  spare: SharedArrayBuffer;
  /** 65536 bytes: non-zero for ports whose OUTs are posted. */
  postedPorts: SharedArrayBuffer;
  /** MMIO ranges whose writes are posted. */
  postedMmio: { base: number; length: number }[];
  /** Devices that run in the worker. */
  workerDevices: WorkerDeviceRange[];
  /** Finish instructions KVM's emulator gives up on (src/emulate/fallback.ts). */
  emulate: boolean;
  /** The VM's shared SYSCALL-repair record (src/emulate/syscall-repair.ts), when the repair is on. */
  syscallRepair?: SharedArrayBuffer;
  /** Guest memory, for the instruction fallback. */
  memory: { gpa: number; buffer: SharedArrayBuffer; readonly: boolean }[];
  /** Who runs ring-0 long-mode code: KVM alone, or vmmapi's CPL0 engine (workers/engine-turn.ts). */
  engine: EngineChoice;
  /** BigInt64 counters of the CPL0 engine ({@link ENGINE_COUNT}), written by the worker. */
  engineCounts: SharedArrayBuffer;
  /** Int32 counters: instructions finished per mnemonic (SUPPORTED_MNEMONICS order), then exceptions injected. */
  emulationCounts: SharedArrayBuffer;
}

/** An error raised in a worker, in a form that survives postMessage with its class and errno. */
export interface WorkerFailure {
  name: string;
  message: string;
  stack?: string;
  /** KvmError's fields. */
  code?: string;
  errno?: number;
  syscall?: string;
}

/** What a vCPU worker's task resolves to. */
export interface VcpuTaskResult {
  vcpu: number;
  /** Why the loop ended. */
  reason: 'stopped' | 'replied-stop' | 'failed';
  /** Set when reason is 'failed'. */
  failure?: WorkerFailure;
  /** False when the thread must not run another task: it was pinned to a CPU, or its task failed. */
  reusable: boolean;
}

/**
 * What a vCPU worker posts on its parent port once its modules are loaded. Terminating a
 * worker thread (or exiting the process) while it still loads its modules aborts Node 20
 * (a V8 fatal error in require(esm)), so a pool is destroyed only after every thread said this.
 */
export const WORKER_LOADED = 'vmmapi:vcpu-worker-loaded';
