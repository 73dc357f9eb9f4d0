/**
 * The on-disk form of a vmmapi snapshot: a directory holding
 * - `snapshot.json`: a one-line header — `{"format":"vmmapi-snapshot","version":1,
 *   "bytes":N,"sha256":"…"}` — then, on the following lines, the body: N bytes of JSON whose
 *   SHA-256 the header gives ({@link SnapshotBody}: the machine's shape, every vCPU's and the
 *   VM's KVM state, every device's state, the memory file's layout, and the caller's own
 *   metadata);
 * - `memory.bin`: guest RAM, each segment at a page-aligned offset, written sparse (pages of
 *   zeros are holes), so a restored VM can map it privately (copy-on-write) and read pages
 *   only as the guest touches them.
 *
 * Reading checks, before anything is created: the header's format and version, the body's
 * length and checksum, the body's shape, and that memory.bin has the length the body says. A
 * truncated, corrupt or foreign snapshot is a {@link SnapshotError} naming the file and what
 * is wrong. Guest memory is not hashed on every restore (that would make the cost grow with
 * RAM); `memory.sha256` records it, and verifyMemoryFile (./memory-file.ts) checks it on request.
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** memory.bin is checksummed (and verified) in chunks of this many bytes; segments start on a chunk boundary. */
export const VERIFY_CHUNK = 16 << 20;

/** The header's `format`. */
export const SNAPSHOT_FORMAT = 'vmmapi-snapshot';
/** The version this code writes and reads. */
export const SNAPSHOT_VERSION = 1;
/** The state file of a snapshot directory. */
export const STATE_FILE = 'snapshot.json';
/** The guest-memory file of a snapshot directory. */
export const MEMORY_FILE = 'memory.bin';

/** A snapshot that cannot be read: missing, truncated, corrupt, of another version, or not for this machine. */
export class SnapshotError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SnapshotError';
  }
}

/** One RAM segment's place in memory.bin. */
export interface SnapshotSegment {
  /** Guest-physical address. */
  gpa: number;
  /** Bytes (a multiple of the page size). */
  length: number;
  /** Offset in memory.bin (page-aligned). */
  offset: number;
  /** Guest-read-only (a ROM). */
  readonly: boolean;
}

/** Everything in a snapshot but guest memory. Device and KVM states are the encoded forms their owners validate. */
export interface SnapshotBody {
  /** The vmmapi version that wrote it. */
  vmmapi: string;
  /** When it was written (ISO 8601). */
  createdAt: string;
  /** The machine's shape; a restore must recreate the same. */
  machine: {
    /** What kind of machine ('pc'). */
    kind: string;
    /** Guest RAM in bytes. */
    memory: number;
    /** vCPUs. */
    cpus: number;
    /** SHA-256 of the CPUID table the vCPUs were given (a restore on a host that gives another is refused). */
    cpuid: string;
    /** The machine's creation options that shape it (JSON-safe), for the restorer. */
    options: Record<string, unknown>;
  };
  /** memory.bin's layout. */
  memory: {
    /** memory.bin's length in bytes. */
    bytes: number;
    /** Bytes actually written (the rest are holes). */
    written: number;
    /** SHA-256 over memory.bin's runs of data pages, each with its offset and length (memory-file.ts, hashRun). */
    sha256: string;
    segments: SnapshotSegment[];
  };
  /** Per vCPU, its encoded KVM state. */
  vcpus: unknown[];
  /** The VM's encoded KVM state (irqchip, PIT, clock). */
  vm: unknown;
  /** Device states by owner (platform devices, PCI, virtio). */
  devices: Record<string, unknown>;
  /** The caller's own data (e.g. the CLI's device arguments). */
  meta: Record<string, unknown>;
}

interface Header {
  format: string;
  version: number;
  bytes: number;
  sha256: string;
}

const sha256 = (data: string | Uint8Array): string => createHash('sha256').update(data).digest('hex');

/**
 * Write `body` as `dir`/snapshot.json (through a temporary file and a rename, so a crash never
 * leaves a half-written state file under the real name).
 */
export function writeStateFile(dir: string, body: SnapshotBody): void {
  const text = JSON.stringify(body);
  const header: Header = { format: SNAPSHOT_FORMAT, version: SNAPSHOT_VERSION, bytes: Buffer.byteLength(text), sha256: sha256(text) };
  const tmp = join(dir, `.${STATE_FILE}.tmp`);
  writeFileSync(tmp, `${JSON.stringify(header)}\n${text}\n`);
  renameSync(tmp, join(dir, STATE_FILE));
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function need(cond: boolean, file: string, what: string): asserts cond {
  if (!cond) throw new SnapshotError(`${file}: ${what}`);
}

const isCount = (v: unknown, max = Number.MAX_SAFE_INTEGER): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max;

/** Read and check `dir`/snapshot.json and memory.bin's length; SnapshotError naming the problem. */
export function readStateFile(dir: string): SnapshotBody {
  const file = join(dir, STATE_FILE);
  let raw: Buffer;
  try {
    raw = readFileSync(file);
  } catch (e) {
    throw new SnapshotError(`${file}: cannot read the snapshot's state file (${(e as Error).message})`);
  }
  const nl = raw.indexOf(0x0a);
  need(nl > 0, file, 'not a vmmapi snapshot (no header line)');
  let header: unknown;
  try {
    header = JSON.parse(raw.subarray(0, nl).toString('utf8'));
  } catch {
    throw new SnapshotError(`${file}: not a vmmapi snapshot (the header line is not JSON)`);
  }
  need(isObject(header) && header.format === SNAPSHOT_FORMAT, file, 'not a vmmapi snapshot (no "format": "vmmapi-snapshot" header)');
  need(header.version === SNAPSHOT_VERSION, file, `snapshot format version ${String(header.version)}; this vmmapi reads version ${SNAPSHOT_VERSION}`);
  need(isCount(header.bytes) && typeof header.sha256 === 'string', file, 'the header has no valid "bytes" and "sha256"');
  const body = raw.subarray(nl + 1, nl + 1 + header.bytes);
  need(body.length === header.bytes, file, `truncated: the header announces ${header.bytes} bytes of state, the file holds ${body.length}`);
  need(sha256(body) === header.sha256, file, 'corrupt: the state does not match its SHA-256 checksum');
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new SnapshotError(`${file}: corrupt: the state is not JSON`);
  }
  const b = checkBody(parsed, file);
  checkMemoryFile(dir, b);
  return b;
}

function checkBody(b: unknown, file: string): SnapshotBody {
  need(isObject(b), file, 'the state is not an object');
  need(typeof b.vmmapi === 'string' && typeof b.createdAt === 'string', file, 'the state lacks "vmmapi" or "createdAt"');
  const m = b.machine;
  need(isObject(m) && typeof m.kind === 'string' && isCount(m.memory) && isCount(m.cpus, 1024) && m.cpus >= 1, file, 'the state\'s "machine" is not { kind, memory, cpus, cpuid, options }');
  need(typeof m.cpuid === 'string' && isObject(m.options), file, 'the state\'s "machine" lacks "cpuid" or "options"');
  const mem = b.memory;
  need(isObject(mem) && isCount(mem.bytes) && isCount(mem.written) && typeof mem.sha256 === 'string' && Array.isArray(mem.segments), file, 'the state\'s "memory" is not { bytes, written, sha256, segments }');
  let end = 0;
  for (const [i, s] of (mem.segments as unknown[]).entries()) {
    need(isObject(s) && isCount(s.gpa) && isCount(s.length) && isCount(s.offset) && typeof s.readonly === 'boolean', file, `memory segment ${i} is not { gpa, length, offset, readonly }`);
    need(s.length > 0 && s.offset % 4096 === 0 && s.length % 4096 === 0 && s.gpa % 4096 === 0, file, `memory segment ${i} is not page-aligned`);
    need(s.offset >= end && s.offset + s.length <= (mem.bytes as number), file, `memory segment ${i} lies outside memory.bin or overlaps the one before`);
    end = s.offset + s.length;
  }
  need(Array.isArray(b.vcpus) && b.vcpus.length === m.cpus, file, `the state holds ${Array.isArray(b.vcpus) ? b.vcpus.length : 'no'} vCPU states for ${m.cpus} vCPUs`);
  need(isObject(b.devices) && isObject(b.meta) && 'vm' in b, file, 'the state lacks "vm", "devices" or "meta"');
  return b as unknown as SnapshotBody;
}

function checkMemoryFile(dir: string, b: SnapshotBody): void {
  const file = join(dir, MEMORY_FILE);
  let size: number;
  try {
    const fd = openSync(file, 'r');
    try {
      size = fstatSync(fd).size;
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    throw new SnapshotError(`${file}: cannot open the snapshot's memory file (${(e as Error).message})`);
  }
  need(size === b.memory.bytes, file, `truncated or foreign: ${size} bytes, the state says ${b.memory.bytes}`);
}
