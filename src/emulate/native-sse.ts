/**
 * The native path of the instruction fallback: SSE/MMX instructions (kernel SIMD code: RAID6,
 * crypto, checksums) that KVM's emulator cannot run are executed on the host CPU with the
 * guest's general registers and x87/SSE state loaded (native/sse_exec.*).
 *
 * Only vetted encodings run: 64-bit mode, the 0F/0F38/0F3A SSE opcode ranges below (no
 * instruction that transfers control, touches memory implicitly or writes a segment), no
 * LOCK/segment/address-size prefixes, and never the host stack pointer as a general-register
 * operand. A memory operand is translated through the guest page tables, copied to a
 * scratch area, and the instruction is re-encoded RIP-relative to it; bytes the instruction
 * changed are written back to guest memory. FP exceptions are masked while it runs (the guest's
 * mask bits are restored afterwards), and a host fault (e.g. an opcode the host lacks) becomes
 * #UD for the guest, never a crash.
 */
import { native } from '../kvm/native.js';
import { FPU, REGS_FIELDS, SIZEOF, decodeRegs, encodeRegs } from '../kvm/structs.js';
import { EFER, RFLAGS, STATUS_FLAGS } from './flags.js';
import { linearRead, linearWrite } from './paging.js';
import type { PagingContext } from './page-walk.js';
import type { CpuState, EmulatorHost } from './host.js';
import type { EmulationResult } from './emulator.js';

import { NATIVE_SSE_MNEMONIC } from './mnemonics.js';

const SCRATCH = 64;

type Map = 1 | 0x38 | 0x3a;

function inRanges(op: number, ranges: readonly (readonly [number, number])[]): boolean {
  return ranges.some(([a, b]) => op >= a && op <= b);
}

/** Opcodes (second byte after 0F) allowed natively. */
const MAP1: readonly (readonly [number, number])[] = [
  [0x10, 0x17], [0x28, 0x2f], [0x50, 0x77], [0x7c, 0x7f], [0xc2, 0xc2], [0xc4, 0xc6], [0xd0, 0xf6], [0xf8, 0xfe],
];
const MAP38: readonly (readonly [number, number])[] = [
  [0x00, 0x0b], [0x10, 0x10], [0x14, 0x15], [0x17, 0x17], [0x1c, 0x1e], [0x20, 0x25], [0x28, 0x2b], [0x30, 0x35],
  [0x37, 0x41], [0xdb, 0xdf],
];
const MAP3A: readonly (readonly [number, number])[] = [
  [0x08, 0x0f], [0x14, 0x17], [0x20, 0x22], [0x40, 0x42], [0x44, 0x44], [0x60, 0x63], [0xdf, 0xdf],
];
/** Map-1 opcodes with an imm8. */
const MAP1_IMM = new Set([0x70, 0x71, 0x72, 0x73, 0xc2, 0xc4, 0xc5, 0xc6]);

/** Which ModRM field names a general register (the other is an MMX/XMM register or memory). */
function gprField(map: Map, op: number, prefix: number): 'reg' | 'rm' | undefined {
  if (map === 1) {
    if (op === 0x6e) return 'rm'; // movd/movq mm/xmm, r/m
    if (op === 0x7e && prefix !== 0xf3) return 'rm'; // movd/movq r/m, mm/xmm
    if (op === 0x50 || op === 0xd7 || op === 0xc5) return 'reg'; // movmsk, pmovmskb, pextrw
    if (op === 0xc4) return 'rm'; // pinsrw
    if (op === 0x2a) return prefix === 0xf3 || prefix === 0xf2 ? 'rm' : undefined; // cvtsi2ss/sd
    if (op === 0x2c || op === 0x2d) return prefix === 0xf3 || prefix === 0xf2 ? 'reg' : undefined; // cvt(t)s?2si
  }
  if (map === 0x3a && (op === 0x14 || op === 0x15 || op === 0x16 || op === 0x17 || op === 0x20 || op === 0x22)) return 'rm';
  return undefined;
}

interface Parsed {
  length: number;
  prefixes: number[];
  rex: number;
  map: Map;
  opcode: number;
  modrm: number;
  modrmAt: number;
  imm: number[];
  mem?: { base?: number; index?: number; scale: number; disp: bigint; ripRelative: boolean };
  lastPrefix: number;
}

function parse(b: Uint8Array): Parsed | string {
  let i = 0;
  const prefixes: number[] = [];
  let lastPrefix = 0;
  while (i < b.length && (b[i] === 0x66 || b[i] === 0xf2 || b[i] === 0xf3)) {
    prefixes.push(b[i]);
    if (b[i] !== 0x66) lastPrefix = b[i];
    i++;
  }
  if (lastPrefix === 0 && prefixes.includes(0x66)) lastPrefix = 0x66;
  let rex = 0;
  if (i < b.length && b[i] >= 0x40 && b[i] <= 0x4f) rex = b[i++];
  if (b[i] !== 0x0f) return 'not a 0F-map instruction (or a prefix that is not allowed)';
  i++;
  let map: Map = 1;
  if (b[i] === 0x38 || b[i] === 0x3a) map = b[i++] as 0x38 | 0x3a;
  if (i >= b.length) return 'truncated';
  const opcode = b[i++];
  const ok = map === 1 ? inRanges(opcode, MAP1) : map === 0x38 ? inRanges(opcode, MAP38) : inRanges(opcode, MAP3A);
  if (!ok) return `opcode ${map === 1 ? '0f' : map === 0x38 ? '0f 38' : '0f 3a'} ${opcode.toString(16)} is not on the native list`;
  if (map === 1 && opcode === 0x77) return 'emms has no ModRM'; // not run natively
  if (i >= b.length) return 'truncated';
  const modrmAt = i;
  const modrm = b[i++];
  const mod = modrm >> 6;
  const rm = modrm & 7;
  let mem: Parsed['mem'];
  if (mod !== 3) {
    let base: number | undefined = rm | ((rex & 1) << 3);
    let index: number | undefined;
    let scale = 1;
    let disp = 0n;
    let ripRelative = false;
    if (rm === 4) {
      if (i >= b.length) return 'truncated';
      const sib = b[i++];
      scale = 1 << (sib >> 6);
      const idx = ((sib >> 3) & 7) | ((rex & 2) << 2);
      index = idx === 4 ? undefined : idx;
      base = (sib & 7) | ((rex & 1) << 3);
      if ((sib & 7) === 5 && mod === 0) {
        base = undefined;
        if (i + 4 > b.length) return 'truncated';
        disp = BigInt(new DataView(b.buffer, b.byteOffset + i, 4).getInt32(0, true));
        i += 4;
      }
    } else if (rm === 5 && mod === 0) {
      base = undefined;
      ripRelative = true;
      if (i + 4 > b.length) return 'truncated';
      disp = BigInt(new DataView(b.buffer, b.byteOffset + i, 4).getInt32(0, true));
      i += 4;
    }
    if (mod === 1) {
      if (i + 1 > b.length) return 'truncated';
      disp = BigInt((b[i++] << 24) >> 24);
    } else if (mod === 2) {
      if (i + 4 > b.length) return 'truncated';
      disp = BigInt(new DataView(b.buffer, b.byteOffset + i, 4).getInt32(0, true));
      i += 4;
    }
    mem = { base, index, scale, disp, ripRelative };
  }
  const immLen = map === 0x3a || (map === 1 && MAP1_IMM.has(opcode)) ? 1 : 0;
  if (i + immLen > b.length) return 'truncated';
  const imm = Array.from(b.subarray(i, i + immLen));
  i += immLen;
  if (i > 15) return 'longer than 15 bytes';
  return { length: i, prefixes, rex, map, opcode, modrm, modrmAt, imm, mem, lastPrefix };
}

/** kvm_fpu → FXSAVE image with every FP exception masked. */
function toFxsave(fpu: DataView): Uint8Array {
  const fx = new Uint8Array(512);
  const v = new DataView(fx.buffer);
  v.setUint16(0, fpu.getUint16(FPU.fcw, true) | 0x3f, true);
  v.setUint16(2, fpu.getUint16(FPU.fsw, true) & ~0x80, true); // no pending x87 exception
  v.setUint8(4, fpu.getUint8(FPU.ftwx));
  v.setUint16(6, fpu.getUint16(FPU.lastOpcode, true), true);
  v.setBigUint64(8, fpu.getBigUint64(FPU.lastIp, true), true);
  v.setBigUint64(16, fpu.getBigUint64(FPU.lastDp, true), true);
  v.setUint32(24, (fpu.getUint32(FPU.mxcsr, true) & 0xffff) | 0x1f80, true);
  v.setUint32(28, 0xffff, true);
  for (let r = 0; r < 8; r++) fx.set(new Uint8Array(fpu.buffer, fpu.byteOffset + FPU.fpr + r * 16, 16), 32 + r * 16);
  for (let r = 0; r < 16; r++) fx.set(new Uint8Array(fpu.buffer, fpu.byteOffset + FPU.xmm + r * 16, 16), 160 + r * 16);
  return fx;
}

/** FXSAVE image → kvm_fpu, keeping the guest's own exception-mask bits. */
function fromFxsave(fx: Uint8Array, before: DataView): DataView {
  const v = new DataView(fx.buffer);
  const out = new DataView(new ArrayBuffer(SIZEOF.kvm_fpu));
  new Uint8Array(out.buffer).set(new Uint8Array(before.buffer, before.byteOffset, SIZEOF.kvm_fpu));
  out.setUint16(FPU.fsw, v.getUint16(2, true), true);
  out.setUint8(FPU.ftwx, v.getUint8(4));
  out.setUint32(FPU.mxcsr, (v.getUint32(24, true) & 0x3f) | (before.getUint32(FPU.mxcsr, true) & ~0x3f), true);
  for (let r = 0; r < 8; r++) new Uint8Array(out.buffer, FPU.fpr + r * 16, 16).set(fx.subarray(32 + r * 16, 48 + r * 16));
  for (let r = 0; r < 16; r++) new Uint8Array(out.buffer, FPU.xmm + r * 16, 16).set(fx.subarray(160 + r * 16, 176 + r * 16));
  return out;
}

/**
 * Execute `bytes` natively if it is a vetted SSE/MMX instruction in 64-bit mode. Returns
 * undefined when the instruction is not eligible (the caller reports it unsupported).
 * Mutates `cpu.regs` on success (RIP advanced); writes FPU state and memory through `host`.
 */
export function executeSseNatively(bytes: Uint8Array, cpu: CpuState, host: EmulatorHost): EmulationResult | undefined {
  const { regs, sregs } = cpu;
  const long = (sregs.efer & EFER.LMA) !== 0n && sregs.cs.l === 1;
  if (!long) return undefined;
  const p = parse(bytes);
  if (typeof p === 'string') return undefined;
  if ((sregs.cr0 & 0x8n) !== 0n) return { kind: 'exception', mnemonic: NATIVE_SSE_MNEMONIC, vector: 7 }; // CR0.TS → #NM
  if ((sregs.cr0 & 0x4n) !== 0n || (sregs.cr4 & 0x200n) === 0n) return { kind: 'exception', mnemonic: NATIVE_SSE_MNEMONIC, vector: 6 }; // EM / !OSFXSR → #UD
  const mod = p.modrm >> 6;
  const g = gprField(p.map, p.opcode, p.lastPrefix);
  if (g) {
    const reg = ((p.modrm >> 3) & 7) | ((p.rex & 4) << 1);
    const rm = (p.modrm & 7) | ((p.rex & 1) << 3);
    if ((g === 'reg' && reg === 4) || (g === 'rm' && mod === 3 && rm === 4)) return undefined; // the host stack pointer
  }

  const ctx: PagingContext = { cr0: sregs.cr0, cr3: sregs.cr3, cr4: sregs.cr4, efer: sregs.efer, cpl: sregs.cs.dpl, ac: (regs.rflags & RFLAGS.AC) !== 0n };
  const scratch = new Uint8Array(SCRATCH);
  let code: Uint8Array;
  let ea = 0n;
  let avail = 0;
  if (p.mem) {
    const gpr = (n: number) => regs[REGS_FIELDS[[0, 2, 3, 1, 6, 7, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15][n]]];
    ea = p.mem.disp;
    if (p.mem.ripRelative) ea += regs.rip + BigInt(p.length);
    if (p.mem.base !== undefined) ea += gpr(p.mem.base);
    if (p.mem.index !== undefined) ea += gpr(p.mem.index) * BigInt(p.mem.scale);
    ea = BigInt.asUintN(64, ea);
    // read up to 16 bytes: what the page holds, plus the next page if it is mapped
    const first = Math.min(16, 4096 - Number(ea & 0xfffn));
    const r1 = linearRead(host.memory, ctx, ea, first);
    if (!r1.ok) {
      if (r1.fault) return { kind: 'exception', mnemonic: NATIVE_SSE_MNEMONIC, vector: r1.fault.vector, errorCode: r1.fault.errorCode, cr2: 'cr2' in r1.fault ? r1.fault.cr2 : undefined };
      return undefined; // MMIO operand
    }
    scratch.set(r1.bytes);
    avail = first;
    if (first < 16) {
      const r2 = linearRead(host.memory, ctx, ea + BigInt(first), 16 - first);
      if (r2.ok) {
        scratch.set(r2.bytes, first);
        avail = 16;
      }
    }
    // re-encode: same prefixes/REX (B/X cleared)/opcode, ModRM mod=00 rm=101 (RIP-relative), disp32, imm
    const head = Array.from(bytes.subarray(0, p.modrmAt));
    if (p.rex) head[head.indexOf(p.rex)] = p.rex & ~0x3;
    const len = head.length + 1 + 4 + p.imm.length;
    const disp = SCRATCH - len;
    code = Uint8Array.from([...head, (p.modrm & 0x38) | 0x05, disp & 0xff, 0, 0, 0, ...p.imm]);
  } else {
    code = bytes.slice(0, p.length);
  }

  const before = host.getFpu();
  const fx = toFxsave(before);
  const rbuf = new Uint8Array(encodeRegs({ ...regs, rflags: (regs.rflags & STATUS_FLAGS) | 2n }));
  const original = scratch.slice();
  const sig = native().execSse(code, rbuf, fx, scratch);
  if (sig !== 0) return { kind: 'exception', mnemonic: NATIVE_SSE_MNEMONIC, vector: 6 }; // the host could not run it: #UD
  // memory first: if the store faults, nothing else is committed
  if (p.mem) {
    let lo = -1;
    let hi = -1;
    for (let k = 0; k < avail; k++) {
      if (scratch[k] !== original[k]) {
        if (lo < 0) lo = k;
        hi = k;
      }
    }
    if (lo >= 0) {
      const w = linearWrite(host.memory, ctx, ea + BigInt(lo), scratch.slice(lo, hi + 1));
      if (!w.ok) {
        if (w.fault) return { kind: 'exception', mnemonic: NATIVE_SSE_MNEMONIC, vector: w.fault.vector, errorCode: w.fault.errorCode, cr2: 'cr2' in w.fault ? w.fault.cr2 : undefined };
        return undefined;
      }
    }
  }
  const after = decodeRegs(rbuf.buffer as ArrayBuffer);
  for (const f of REGS_FIELDS) if (f !== 'rip' && f !== 'rflags' && f !== 'rsp') regs[f] = after[f];
  regs.rflags = (regs.rflags & ~STATUS_FLAGS) | (after.rflags & STATUS_FLAGS);
  regs.rip = BigInt.asUintN(64, regs.rip + BigInt(p.length));
  host.setFpu(fromFxsave(fx, before));
  return { kind: 'emulated', mnemonic: NATIVE_SSE_MNEMONIC, length: p.length, regsChanged: true, sregsChanged: false, fpuChanged: true };
}
