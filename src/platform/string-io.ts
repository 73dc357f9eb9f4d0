/**
 * Port I/O that answers `rep ins` element by element.
 *
 * The runner's bus answers an IN exit with one device read copied into every element of a
 * string (`rep insb`) transfer, which is wrong for FIFO-like ports such as the fw_cfg data
 * register: SeaBIOS reads fw_cfg items (the file directory, `etc/e820`) with `rep insb`.
 * Ports served here are left off the bus and answered from the runner's `inout` event
 * (which sees accesses no bus device claimed), one device read per element.
 */
import type { AccessSize, Device } from '../bus/device.js';
import type { InoutExit } from '../exits.js';
import type { VcpuRunner } from '../runner/runner.js';

/** Serve `[base, base + length)` with `device`, string transfers included. */
export function registerStringPorts(runner: VcpuRunner, base: number, length: number, device: Device): void {
  runner.on('inout', (e: InoutExit) => {
    if (e.port < base || e.port >= base + length) return;
    const offset = e.port - base;
    const width = e.bytes as AccessSize;
    const d = e.data;
    for (let i = 0; i + width <= d.length; i += width) {
      if (e.in) {
        let v = BigInt.asUintN(64, BigInt(device.read(offset, width)));
        for (let k = 0; k < width; k++, v >>= 8n) d[i + k] = Number(v & 0xffn);
      } else {
        let v = 0;
        for (let k = width - 1; k >= 0; k--) v = v * 256 + d[i + k];
        device.write(offset, width, v);
      }
    }
  });
}
