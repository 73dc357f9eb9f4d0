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
