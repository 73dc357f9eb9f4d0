// A child process for the runner's shutdown-path tests: runs a spinning 2-vCPU guest under
// a VcpuRunner (from the built dist/), then leaves the way argv[2] says.
import { Reg, VcpuRunner, Vm } from '../../dist/src/index.js';

const mode = process.argv[2];
const vm = Vm.create('child', { vcpus: 2 });
vm.setupMemory(0, 0x100000);
// vCPU 0: out %al,$0x70 ; 1: jmp 1b      vCPU 1: 1: jmp 1b
vm.memory.writeBytes(0x1000, Uint8Array.from([0xe6, 0x70, 0xeb, 0xfe]));
vm.memory.writeBytes(0x2000, Uint8Array.from([0xeb, 0xfe]));
for (const [v, at] of [[0, 0x1000], [1, 0x2000]]) {
  vm.setDesc(v, Reg.CS, { base: 0n, limit: 0xffff, access: 0x9b });
  vm.setRegisters(v, [[Reg.CS, 0], [Reg.RIP, at], [Reg.RFLAGS, 2]]);
  if (v > 0) vm.vcpuFd(v).setMpState(new Uint8Array(4));
}
const runner = new VcpuRunner(vm);
runner.pio.register(0x70, 1, {
  read: () => 0,
  write: () => {
    if (mode === 'handler-throws') throw new Error('handler failed on purpose');
    console.log('READY');
    if (mode === 'exit') setTimeout(() => process.exit(3), 50);
    if (mode === 'uncaught') setTimeout(() => { throw new Error('uncaught on purpose'); }, 50);
    if (mode === 'stop') setTimeout(() => runner.stop(), 50);
  },
});
if (mode === 'worker-dies') {
  runner.pio.register(0x71, 1, { worker: { module: new URL('./missing-device.mjs', import.meta.url).href, export: 'Nope' } });
}
const result = await runner.start();
console.log('RESULT', result.reason);
vm.destroy();
