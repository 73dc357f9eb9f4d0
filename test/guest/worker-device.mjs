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
