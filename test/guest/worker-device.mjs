import { native } from '../../dist/src/kvm/native.js';
import { threadId } from 'node:worker_threads';

// A device loaded inside vCPU workers by the runner tests: answers every read with a constant.
export class ConstantDevice {
  constructor(options) {
    this.value = options?.value ?? 0;
  }
  read() {
    return this.value;
  }
  write() {}
}

// Reads count up from 1: shows whether string I/O reads the device once per element.
export class CountingDevice {
  constructor() {
    this.n = 0;
  }
  read() {
    return ++this.n;
  }
  write() {}
}

// A device whose read never returns: stop() must still end the run (the worker is terminated).
// options.entered (a SharedArrayBuffer) gets 1 once the read has begun.
export class HangingDevice {
  constructor(options) {
    this.entered = options?.entered ? new Int32Array(options.entered) : undefined;
  }
  read() {
    if (this.entered) Atomics.store(this.entered, 0, 1);
    for (;;) {
      /* a handler that never returns */
    }
  }
  write() {}
}

// A device whose read fails in a system call: the addon raises KvmError ENOENT in the worker,
// and start() must reject with a KvmError carrying it.
export class FailingSyscallDevice {
  read() {
    new (native().FileFd)('/nonexistent/vmmapi-test-device');
    return 0;
  }
  write() {}
}

// Reads answer the low byte of the worker thread's id: shows which thread ran the vCPU.
export class ThreadIdDevice {
  read() {
    return threadId & 0xff;
  }
  write() {}
}
