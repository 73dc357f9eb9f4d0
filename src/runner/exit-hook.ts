/**
 * Process-exit safety: a vCPU inside KVM_RUN blocks worker termination and so process
 * exit (Node joins worker threads). On 'exit' — process.exit(), an uncaught exception, the
 * end of the event loop — every live runner's vCPUs are told to stop and kicked first.
 */

/** Something whose vCPUs can be stopped synchronously. */
export interface Kickable {
  kickAll(): void;
}

let installed = false;

/** Install (once) the 'exit' hook that kicks every runner in `live`. */
export function installExitHook(live: Set<Kickable>): void {
  if (installed) return;
  installed = true;
  process.on('exit', () => {
    for (const k of live) {
      try {
        k.kickAll();
      } catch {
        /* best effort: keep kicking the others */
      }
    }
  });
}
