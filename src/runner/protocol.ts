/**
 * The shared-memory protocol between the main thread and a vCPU worker: one Int32Array
 * control block per vCPU (in a SharedArrayBuffer), holding a mailbox for exits that need
 * the main thread, control words, and a single-producer ring of posted writes.
 *
 * Wake-ups: the worker bumps SEQ (and notifies it) for anything the main thread must look
 * at; the main thread re-reads everything after every wake, since a late notify from an
 * earlier round can wake it early.
 */

/** Indices (in Int32 units) of the control block. */
export const CB = {
  /** Bumped by the worker for every event the main thread must see. */
  SEQ: 0,
  /** Mailbox state: {@link MAILBOX}. */
  STATE: 1,
  /** Main → worker request: {@link CONTROL}. */
  CONTROL: 2,
  /** Worker status: {@link STATUS}. */
  STATUS: 3,
  /** Main sets 1 to ask the worker whether its vCPU halted for good. */
  CHECK_HALT: 4,
  /** Ring: next entry the main thread consumes. */
  RING_HEAD: 5,
  /** Ring: next entry the worker produces. */
  RING_TAIL: 6,
  /** What the posted mailbox entry is: {@link POSTED}. */
  POSTED_KIND: 7,
  /** Main's answer to a posted exit: {@link REPLY}. */
  REPLY: 8,
  /** Counters kept by the worker. */
  EXITS: 9,
  WORKER_HANDLED: 10,
  POSTED_WRITES: 11,
  HOPS: 12,
  EMULATED: 13,
  /** 1 while the main thread sleeps on SEQ (the worker then wakes it for a single posted write). */
  MAIN_SLEEPING: 14,
  /** First Int32 of the ring. */
  RING: 16,
} as const;

/** Mailbox states. */
export const MAILBOX = { IDLE: 0, POSTED: 1, REPLIED: 2 } as const;
/** Control requests. */
export const CONTROL = { RUN: 0, PAUSE: 1, STOP: 2 } as const;
/** Worker statuses. */
export const STATUS = { STARTING: 0, RUNNING: 1, PAUSED: 2, FINISHED: 3 } as const;
/** Kinds of mailbox entries. */
export const POSTED = { EXIT: 0, HALTED: 1, PARKED: 2 } as const;
/** Replies. */
export const REPLY = { CONTINUE: 0, STOP: 1 } as const;

/** Ring entry: 4 × Int32 = [kind | size << 8 | ..., address lo, value lo, value hi / address hi]. */
export const RING_ENTRY_INTS = 4;
/** Ring entries per vCPU (a power of two: indices are counters masked, wrapping at 2^32). */
export const RING_CAPACITY = 1024;
/**
 * The worker wakes a main thread that is awake (spinning or busy) only once this many posted
 * writes are pending; a sleeping one it wakes at the first.
 */
export const RING_BATCH = 64;
/** Ring entry kinds. */
export const RING_KIND = { PIO_WRITE: 1, MMIO_WRITE: 2 } as const;

/** Bytes of one vCPU's control block. */
export const CONTROL_BLOCK_BYTES = (CB.RING + RING_CAPACITY * RING_ENTRY_INTS) * 4;

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

/** What the main thread hands a vCPU worker. */
export interface VcpuTask {
  vcpu: number;
  /** vCPU fd number (adopted by the worker). */
  fd: number;
  /** Host CPU to pin the worker thread to, or -1. */
  pin: number;
  /** This vCPU's control block. */
  control: SharedArrayBuffer;
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
  /** Int32 counters: instructions finished per mnemonic (SUPPORTED_MNEMONICS order), then exceptions injected. */
  emulationCounts: SharedArrayBuffer;
}

/** What a vCPU worker's task resolves to. */
export interface VcpuTaskResult {
  vcpu: number;
  /** Why the loop ended. */
  reason: 'stopped' | 'replied-stop';
}
