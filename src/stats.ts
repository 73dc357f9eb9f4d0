/**
 * KVM binary statistics (KVM_GET_STATS_FD): a header, descriptors, then u64 data. The
 * descriptors are parsed once; each read is one pread of the data block.
 */
import type { NativeFileFd } from './kvm/native.js';

/** One statistic's descriptor. */
export interface StatDescriptor {
  name: string;
  /** KVM_STATS_TYPE_* (cumulative 0, instant 1, peak 2, linear hist 3, log hist 4). */
  type: number;
  /** KVM_STATS_UNIT_* (none 0, bytes 1, seconds 2, cycles 3, boolean 4). */
  unit: number;
  /** Power-of-ten (base 10) or power-of-two exponent, as KVM reports it. */
  exponent: number;
  /** Number of u64 values (more than one for histograms). */
  size: number;
  /** Byte offset of the values within the data block. */
  offset: number;
}

/** A parsed stats fd. */
export class StatsReader {
  /** Each statistic's descriptor (name, type, unit, offset), in the order of {@link read}'s values. */
  readonly descriptors: readonly StatDescriptor[];
  readonly #fd: NativeFileFd;
  readonly #dataOffset: number;
  readonly #dataSize: number;

  /** Parse the header and descriptors of the binary stats `fd` (KVM_GET_STATS_FD); the reader owns it. */
  constructor(fd: NativeFileFd) {
    this.#fd = fd;
    const h = new DataView(fd.pread(24, 0));
    if (h.byteLength < 24) throw new RangeError('stats fd: short header');
    const nameSize = h.getUint32(4, true);
    const numDesc = h.getUint32(8, true);
    const descOffset = h.getUint32(16, true);
    const dataOffset = h.getUint32(20, true);
    if (nameSize > 4096 || numDesc > 100_000) throw new RangeError('stats fd: implausible header');
    const descSize = 16 + nameSize;
    const raw = new DataView(fd.pread(descSize * numDesc, descOffset));
    const descs: StatDescriptor[] = [];
    let dataSize = 0;
    for (let i = 0; i < numDesc && (i + 1) * descSize <= raw.byteLength; i++) {
      const o = i * descSize;
      const flags = raw.getUint32(o, true);
      const nameBytes = new Uint8Array(raw.buffer, o + 16, nameSize);
      const end = nameBytes.indexOf(0);
      const d: StatDescriptor = {
        name: Buffer.from(nameBytes.subarray(0, end < 0 ? nameSize : end)).toString('utf8'),
        type: flags & 0xf,
        unit: (flags >> 4) & 0xf,
        exponent: raw.getInt16(o + 4, true),
        size: raw.getUint16(o + 6, true),
        offset: raw.getUint32(o + 8, true),
      };
      descs.push(d);
      dataSize = Math.max(dataSize, d.offset + d.size * 8);
    }
    this.descriptors = descs;
    this.#dataOffset = dataOffset;
    this.#dataSize = dataSize;
  }

  /** Read every statistic: one bigint each (histograms: the sum of their buckets). */
  read(): bigint[] {
    const v = new DataView(this.#fd.pread(this.#dataSize, this.#dataOffset));
    return this.descriptors.map((d) => {
      let sum = 0n;
      for (let k = 0; k < d.size; k++) {
        const o = d.offset + k * 8;
        if (o + 8 <= v.byteLength) sum += v.getBigUint64(o, true);
      }
      return sum;
    });
  }

  /** Close the fd. */
  close(): void {
    this.#fd.close();
  }
}
