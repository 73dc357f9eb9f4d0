/**
 * Feature negotiation over the common configuration's four feature registers: the
 * offered bits in 32-bit words chosen by device_feature_select, the driver's accepted
 * bits written word by word through driver_feature_select / driver_feature, and the
 * check made when the driver sets FEATURES_OK.
 *
 * The driver's words are kept for every word that can hold an offered bit (and at least
 * words 0 and 1, where VIRTIO_F_VERSION_1 lives) and read back as written. A non-zero write
 * to a higher word cannot be valid; it is not stored (it reads back 0), but it is
 * remembered until reset so that FEATURES_OK is refused, as for any other bit not offered.
 */
import { stateArray, stateBool, stateHex, stateObject, toHex } from '../../pci/state-check.js';
import { checkInt } from '../../pci/util.js';
import { VIRTIO_F_VERSION_1 } from '../device.js';

const VERSION_1 = 1n << BigInt(VIRTIO_F_VERSION_1);

/** The state of a {@link FeatureNegotiation}, for a snapshot. */
export interface FeatureNegotiationState {
  /** device_feature_select. */
  deviceSelect: number;
  /** driver_feature_select. */
  driverSelect: number;
  /** The driver's feature words as written (words 0 and 1, and more if the device offers bits there). */
  driverWords: number[];
  /** The driver wrote a non-zero word past the stored ones (FEATURES_OK will be refused). */
  stray: boolean;
  /** The negotiated features (hex) once FEATURES_OK was accepted, else null. */
  negotiated: string | null;
}

/** Feature registers and negotiation state of one function. */
export class FeatureNegotiation {
  /** Every bit offered to the driver (device bits plus the transport's). */
  readonly offered: bigint;
  /** device_feature_select (any u32). */
  deviceSelect = 0;
  /** driver_feature_select (any u32). */
  driverSelect = 0;
  readonly #words: Uint32Array;
  #stray = false;
  #negotiated: bigint | undefined;

  /** Registers offering `offered` (a non-negative bigint). */
  constructor(offered: bigint) {
    this.offered = offered;
    let words = 2;
    while (offered >> BigInt(32 * words) !== 0n) words++;
    this.#words = new Uint32Array(words);
  }

  /** device_feature: word deviceSelect of the offered bits (0 past the last). */
  get deviceWord(): number {
    return wordOf(this.offered, this.deviceSelect);
  }

  /** driver_feature: word driverSelect as the driver wrote it (0 past the stored words). */
  get driverWord(): number {
    return this.driverSelect < this.#words.length ? this.#words[this.driverSelect] : 0;
  }

  /** A driver_feature write of the u32 `value`. Ignored (returns false) once negotiation is done. */
  writeDriverWord(value: number): boolean {
    if (this.#negotiated !== undefined) return false;
    if (this.driverSelect < this.#words.length) this.#words[this.driverSelect] = value;
    else if (value !== 0) this.#stray = true;
    return true;
  }

  /** Everything the driver accepted so far, as one bigint (stray high words not included). */
  get accepted(): bigint {
    let v = 0n;
    for (let i = this.#words.length - 1; i >= 0; i--) v = (v << 32n) | BigInt(this.#words[i]);
    return v;
  }

  /**
   * The driver set FEATURES_OK: undefined and the features are fixed if the accepted set
   * is acceptable, else why it is refused (a bit not offered, or no VIRTIO_F_VERSION_1).
   */
  finish(): string | undefined {
    if (this.#negotiated !== undefined) return undefined;
    const accepted = this.accepted;
    const extra = accepted & ~this.offered;
    if (extra !== 0n || this.#stray) {
      const bits = extra !== 0n ? ` 0x${extra.toString(16)}` : ` above bit ${32 * this.#words.length - 1}`;
      return `the driver accepted feature bits that were not offered:${bits}`;
    }
    if ((accepted & VERSION_1) === 0n) return 'the driver did not accept VIRTIO_F_VERSION_1 (a legacy driver)';
    this.#negotiated = accepted;
    return undefined;
  }

  /** The negotiated features once FEATURES_OK was accepted, else undefined. */
  get negotiated(): bigint | undefined {
    return this.#negotiated;
  }

  /** A JSON-safe copy of the registers and the outcome (see {@link FeatureNegotiationState}). */
  snapshot(): FeatureNegotiationState {
    const n = this.#negotiated;
    return { deviceSelect: this.deviceSelect, driverSelect: this.driverSelect, driverWords: [...this.#words], stray: this.#stray, negotiated: n === undefined ? null : toHex(n) };
  }

  /**
   * Check `state`: the negotiated features it holds, and the function that applies it.
   * Negotiated features must be what the words say and pass the FEATURES_OK check against
   * this function's offer. TypeError/RangeError naming the field.
   */
  prepareRestore(state: FeatureNegotiationState): { readonly negotiated: bigint | undefined; readonly commit: () => void } {
    const s = stateObject(state, 'state');
    const deviceSelect = checkInt(s.deviceSelect, 'state.deviceSelect', 0, 0xffff_ffff);
    const driverSelect = checkInt(s.driverSelect, 'state.driverSelect', 0, 0xffff_ffff);
    const n = this.#words.length;
    const words = stateArray(s.driverWords, 'state.driverWords', n, n).map((w, i) => checkInt(w, `state.driverWords[${i}]`, 0, 0xffff_ffff));
    const stray = stateBool(s.stray, 'state.stray');
    const negotiated = s.negotiated === null ? undefined : stateHex(s.negotiated, 'state.negotiated', (1n << BigInt(32 * n)) - 1n);
    if (negotiated !== undefined) {
      const trial = new FeatureNegotiation(this.offered);
      words.forEach((w, i) => (trial.#words[i] = w));
      trial.#stray = stray;
      if (trial.accepted !== negotiated) throw new RangeError(`state.negotiated ${toHex(negotiated)} is not what state.driverWords accept (${toHex(trial.accepted)})`);
      const refusal = trial.finish();
      if (refusal !== undefined) throw new RangeError(`state.negotiated: ${refusal}`);
    }
    const commit = () => {
      this.deviceSelect = deviceSelect;
      this.driverSelect = driverSelect;
      this.#words.set(words);
      this.#stray = stray;
      this.#negotiated = negotiated;
    };
    return { negotiated, commit };
  }

  /** Device reset: selects 0, nothing accepted, nothing negotiated. */
  reset(): void {
    this.deviceSelect = this.driverSelect = 0;
    this.#words.fill(0);
    this.#stray = false;
    this.#negotiated = undefined;
  }
}

function wordOf(v: bigint, select: number): number {
  if (select > 0xffff) return 0; // far past any offered bit; avoids a huge shift count
  return Number((v >> BigInt(32 * select)) & 0xffff_ffffn);
}
