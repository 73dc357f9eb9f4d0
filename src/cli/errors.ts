/** CLI errors and exit codes. */

/**
 * Process exit codes of `vmmapi run` (the README's table). A debug-exit write gives the
 * guest's own status, `((value << 1) | 1) & 0xff`: always odd, so only 1 is shared with these.
 */
export const ExitCode = {
  /** The guest powered off (ACPI S5) or asked for a reset. */
  OK: 0,
  /** The guest failed (KVM internal error, triple fault) or the VMM could not run it. */
  GUEST_FAILURE: 1,
  /** Bad command line, unreadable or unusable image, impossible machine. */
  USAGE: 2,
  /**
   * Every vCPU halted with interrupts disabled (or waits for INIT/SIPI): the guest stopped
   * without saying how it ended (no debug-exit, no power-off).
   */
  HALTED: 4,
  /** `--timeout` expired (the convention of coreutils' timeout). */
  TIMEOUT: 124,
} as const;

/** A command-line or configuration problem: reported on one line, exit code 2. */
export class UsageError extends Error {
  /** A usage problem, `message` in one line. */
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
