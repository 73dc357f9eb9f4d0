import { readFileSync } from 'node:fs';
import {
  createPc, fixturePath, DeviceCore, VIRTIO_DEVICE_TYPE,
  type DescriptorChain, type SplitQueue, type VirtioContext, type VirtioDevice,
} from 'vmmapi';

/**
 * A virtio entropy device written from scratch (a guest's virtio-rng driver binds to it):
 * no feature bits, no configuration space, one queue whose handler fills each buffer the
 * driver posts. Its "entropy" is a counter, so the run is easy to check.
 */
class CountingEntropy implements VirtioDevice {
  readonly deviceType = VIRTIO_DEVICE_TYPE.ENTROPY;
  readonly features = 0n;
  readonly queueSizes = [64];                      // one queue, up to 64 entries
  readonly configSize = 0;
  served = 0;
  readonly #core = new DeviceCore(1);              // activation state, a bounded serve loop
  #next = 1;

  readConfig(): number {
    return 0;
  }
  writeConfig(): void {}
  activate(ctx: VirtioContext): void {
    this.#core.activate(ctx);
  }
  reset(): void {
    this.#core.reset();
  }
  notify(index: number): void {
    // pop every available chain, answer it, interrupt the driver once (MSI-X)
    this.#core.serve(index, 64, (chain: DescriptorChain, queue: SplitQueue) => {
      const bytes = new Uint8Array(Math.min(chain.writableBytes, 4096)).map(() => this.#next++ & 0xff || 1);
      queue.pushUsed(chain, chain.writeBytes(bytes));
      this.served++;
      return true;                                 // already on the used ring
    });
  }
}

let text = '';
const pc = createPc({ memory: 32 << 20, serial: { onOutput: (b) => (text += String.fromCharCode(b)) } });
try {
  const entropy = new CountingEntropy();
  const { pci, notify } = pc.addVirtioDevice(entropy);      // a virtio-pci function on bus 0
  // the guest: a small bare-metal virtio driver (guests/src/virtio-blk.c) that reads 64 bytes
  pc.loadMultiboot(readFileSync(fixturePath('virtio-blk.elf')));
  await pc.run({ timeoutMs: 60_000 });
  console.log(`entropy device at 00:${pci.slot.toString(16).padStart(2, '0')}.0, notified by ${notify}: served ${entropy.served} request(s)`);
  console.log(text.trimEnd().split('\n').filter((l) => l.startsWith('virtio-rng: used') || l.startsWith('virtio-fixture: ')).join('\n'));
} finally {
  pc.destroy();
}
