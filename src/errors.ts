/**
 * Error classes. A failed system call surfaces as a {@link KvmError}, created by the native
 * addon itself (the class is handed to it at load), so it is a real instance everywhere.
 */

/** A failed system call (ioctl, open, mmap …) or a libvmmapi-level errno condition. */
export class KvmError extends Error {
  /** The errno name, e.g. `'EINVAL'`. */
  readonly code: string;
  /** The errno number. */
  readonly errno: number;
  /** The failing call, e.g. `'KVM_SET_REGS'` or a vmmapi function name. */
  readonly syscall: string;
  /** A failure of `syscall` with errno `code` (`errno`); the native addon creates these too. */
  constructor(message: string, code: string, errno: number, syscall: string) {
    super(message);
    this.name = 'KvmError';
    this.code = code;
    this.errno = errno;
    this.syscall = syscall;
  }
}

const ERRNO: Record<string, number> = {
  EPERM: 1, ENOENT: 2, EINTR: 4, EIO: 5, ENXIO: 6, E2BIG: 7, EBADF: 9, EAGAIN: 11, ENOMEM: 12,
  EFAULT: 14, EBUSY: 16, EEXIST: 17, ENODEV: 19, EINVAL: 22, ENOSPC: 28, ERANGE: 34, EDEADLK: 35, ENOSYS: 38,
  ENOTSUP: 95,
};

/** Build a {@link KvmError} for an errno condition detected in TypeScript. */
export function errnoError(code: keyof typeof ERRNO | string, syscall: string, detail: string): KvmError {
  return new KvmError(`${syscall} failed: ${code} (${detail})`, code, ERRNO[code] ?? 0, syscall);
}

/** Thrown by a function that this build does not implement on this host. */
export class NotImplementedError extends Error {
  /** `what` is not implemented. */
  constructor(what: string) {
    super(`${what} is not implemented`);
    this.name = 'NotImplementedError';
  }
}

/** PCI passthrough cannot proceed: names the missing piece (device, IOMMU group, vfio-pci …). */
export class PassthroughUnavailableError extends Error {
  /** What is missing: `'device'`, `'iommu-group'`, `'vfio-pci-driver'`, `'vfio'`, `'assignment'`. */
  readonly missing: 'device' | 'iommu-group' | 'vfio-pci-driver' | 'vfio' | 'assignment';
  /** `missing` names the absent piece; `message` says what to do. */
  constructor(missing: PassthroughUnavailableError['missing'], message: string) {
    super(message);
    this.name = 'PassthroughUnavailableError';
    this.missing = missing;
  }
}
