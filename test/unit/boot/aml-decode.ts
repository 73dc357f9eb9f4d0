/**
 * A small AML reader for the tests (not a test file itself): enough of the grammar to walk
 * what src/boot/aml.ts writes — names, scopes, devices, methods, packages, buffers,
 * integers, strings — decoding PkgLengths independently of the encoder.
 */

/** A decoded term. */
export type AmlNode =
  | { kind: 'name'; name: string; value: AmlNode }
  | { kind: 'scope' | 'device'; name: string; children: AmlNode[]; pkgLength: number; pkgBytes: number }
  | { kind: 'method'; name: string; flags: number; body: Uint8Array }
  | { kind: 'package'; count: number; elements: AmlNode[]; pkgLength: number; pkgBytes: number; variable: boolean }
  | { kind: 'buffer'; size: number; bytes: Uint8Array }
  | { kind: 'integer'; value: bigint }
  | { kind: 'string'; value: string };

/** PkgLength at `at`: the length it encodes and how many bytes it took. */
export function readPkgLength(b: Uint8Array, at: number): { length: number; bytes: number } {
  const lead = b[at];
  const extra = lead >> 6;
  if (extra === 0) return { length: lead & 0x3f, bytes: 1 };
  let length = lead & 0x0f;
  for (let i = 1; i <= extra; i++) length += b[at + i] * 2 ** (4 + 8 * (i - 1));
  return { length, bytes: 1 + extra };
}

/** A NameString at `at` as text (`\_SB_.PCI0`), and its size. */
export function readNameString(b: Uint8Array, at: number): { name: string; bytes: number } {
  let o = at;
  let prefix = '';
  if (b[o] === 0x5c) {
    prefix = '\\';
    o++;
  }
  while (b[o] === 0x5e) {
    prefix += '^';
    o++;
  }
  let count: number;
  if (b[o] === 0x00) {
    count = 0;
    o++;
  } else if (b[o] === 0x2e) {
    count = 2;
    o++;
  } else if (b[o] === 0x2f) {
    count = b[o + 1];
    o += 2;
  } else count = 1;
  const segs: string[] = [];
  for (let i = 0; i < count; i++) {
    segs.push(String.fromCharCode(...b.subarray(o, o + 4)));
    o += 4;
  }
  return { name: prefix + segs.join('.'), bytes: o - at };
}

function le(b: Uint8Array, at: number, n: number): bigint {
  let v = 0n;
  for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[at + i]);
  return v;
}

/** Decode one term at `at`; returns it and its size. Throws on anything it does not know. */
export function readTerm(b: Uint8Array, at: number): { node: AmlNode; bytes: number } {
  const op = b[at];
  switch (op) {
    case 0x00:
      return { node: { kind: 'integer', value: 0n }, bytes: 1 };
    case 0x01:
      return { node: { kind: 'integer', value: 1n }, bytes: 1 };
    case 0xff:
      return { node: { kind: 'integer', value: 0xffff_ffff_ffff_ffffn }, bytes: 1 };
    case 0x0a:
      return { node: { kind: 'integer', value: le(b, at + 1, 1) }, bytes: 2 };
    case 0x0b:
      return { node: { kind: 'integer', value: le(b, at + 1, 2) }, bytes: 3 };
    case 0x0c:
      return { node: { kind: 'integer', value: le(b, at + 1, 4) }, bytes: 5 };
    case 0x0e:
      return { node: { kind: 'integer', value: le(b, at + 1, 8) }, bytes: 9 };
    case 0x0d: {
      let e = at + 1;
      while (b[e] !== 0) e++;
      return { node: { kind: 'string', value: String.fromCharCode(...b.subarray(at + 1, e)) }, bytes: e + 1 - at };
    }
    case 0x08: {
      const n = readNameString(b, at + 1);
      const v = readTerm(b, at + 1 + n.bytes);
      return { node: { kind: 'name', name: n.name, value: v.node }, bytes: 1 + n.bytes + v.bytes };
    }
    case 0x10:
    case 0x5b: {
      const ext = op === 0x5b;
      if (ext && b[at + 1] !== 0x82) throw new Error(`unknown extended opcode 0x${b[at + 1].toString(16)}`);
      const start = at + (ext ? 2 : 1);
      const pl = readPkgLength(b, start);
      const n = readNameString(b, start + pl.bytes);
      const end = start + pl.length;
      const children = readTerms(b.subarray(start + pl.bytes + n.bytes, end));
      return { node: { kind: ext ? 'device' : 'scope', name: n.name, children, pkgLength: pl.length, pkgBytes: pl.bytes }, bytes: end - at };
    }
    case 0x14: {
      const pl = readPkgLength(b, at + 1);
      const n = readNameString(b, at + 1 + pl.bytes);
      const flagsAt = at + 1 + pl.bytes + n.bytes;
      const end = at + 1 + pl.length;
      return { node: { kind: 'method', name: n.name, flags: b[flagsAt], body: b.slice(flagsAt + 1, end) }, bytes: end - at };
    }
    case 0x11: {
      const pl = readPkgLength(b, at + 1);
      const size = readTerm(b, at + 1 + pl.bytes);
      const end = at + 1 + pl.length;
      const data = b.slice(at + 1 + pl.bytes + size.bytes, end);
      if (size.node.kind !== 'integer') throw new Error('buffer size is not an integer');
      return { node: { kind: 'buffer', size: Number(size.node.value), bytes: data }, bytes: end - at };
    }
    case 0x12:
    case 0x13: {
      const variable = op === 0x13;
      const pl = readPkgLength(b, at + 1);
      const end = at + 1 + pl.length;
      let o = at + 1 + pl.bytes;
      let count: number;
      if (variable) {
        const c = readTerm(b, o);
        if (c.node.kind !== 'integer') throw new Error('VarNumElements is not an integer');
        count = Number(c.node.value);
        o += c.bytes;
      } else count = b[o++];
      const elements = readTerms(b.subarray(o, end));
      return { node: { kind: 'package', count, elements, pkgLength: pl.length, pkgBytes: pl.bytes, variable }, bytes: end - at };
    }
    default:
      throw new Error(`unknown opcode 0x${op.toString(16)} at ${at}`);
  }
}

/** Decode a TermList that must fill `b` exactly. */
export function readTerms(b: Uint8Array): AmlNode[] {
  const out: AmlNode[] = [];
  let o = 0;
  while (o < b.length) {
    const t = readTerm(b, o);
    out.push(t.node);
    o += t.bytes;
  }
  if (o !== b.length) throw new Error(`terms overran their package by ${o - b.length} bytes`);
  return out;
}

/** One resource descriptor of a template. */
export interface ResourceDescriptor {
  /** Small items: the item name (bits 6:3); large items: the tag byte. */
  tag: number;
  /** Its bytes, header included. */
  bytes: Uint8Array;
}

/** Split a resource template into descriptors; the last is the end tag. */
export function readResources(b: Uint8Array): ResourceDescriptor[] {
  const out: ResourceDescriptor[] = [];
  let o = 0;
  while (o < b.length) {
    const h = b[o];
    if (h & 0x80) {
      const len = b[o + 1] | (b[o + 2] << 8);
      out.push({ tag: h, bytes: b.subarray(o, o + 3 + len) });
      o += 3 + len;
    } else {
      const len = h & 0x7;
      out.push({ tag: h & 0xf8, bytes: b.subarray(o, o + 1 + len) });
      o += 1 + len;
      if ((h & 0xf8) === 0x78) break;
    }
  }
  if (o !== b.length) throw new Error(`resource template has ${b.length - o} bytes after its end tag`);
  return out;
}

/** An address space descriptor's fields (Word, DWord or QWord). */
export function readAddressSpace(d: ResourceDescriptor): { type: number; general: number; specific: number; granularity: bigint; min: bigint; max: bigint; translation: bigint; length: bigint } {
  const width = d.tag === 0x88 ? 2 : d.tag === 0x87 ? 4 : d.tag === 0x8a ? 8 : 0;
  if (width === 0) throw new Error(`not an address space descriptor: 0x${d.tag.toString(16)}`);
  const f = (i: number): bigint => le(d.bytes, 6 + i * width, width);
  return { type: d.bytes[3], general: d.bytes[4], specific: d.bytes[5], granularity: f(0), min: f(1), max: f(2), translation: f(3), length: f(4) };
}

/** Find `path` (dot-separated, relative to `nodes`) among scopes, devices and names. */
export function find(nodes: AmlNode[], path: string): AmlNode | undefined {
  const [head, ...rest] = path.split('.');
  for (const n of nodes) {
    if (!('name' in n)) continue;
    const last = n.name.split('.').pop()!.replace(/^[\\^]+/, '');
    if (n.name !== head && last !== head) continue;
    if (rest.length === 0) return n;
    if (n.kind === 'scope' || n.kind === 'device') return find(n.children, rest.join('.'));
  }
  return undefined;
}
