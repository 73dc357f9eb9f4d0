#!/usr/bin/env node
/**
 * The `vmmapi` command (package.json `bin`): `vmmapi run [options]`, `vmmapi run --restore
 * DIR`, `vmmapi ctl SOCKET COMMAND`, `vmmapi help`, `vmmapi version`; see {@link USAGE}.
 * Every failure is one line on stderr prefixed with `vmmapi:`; never a stack trace.
 *
 * Start-up matters here (a trivial guest should be done in well under 100 ms, a restore
 * should answer at once): the parser is all that loads before the command is known; `run`
 * starts the vCPU worker threads first (they boot in parallel; a restore reads the snapshot's
 * state file for their number), then imports the platform, the runner, the loaders and the
 * native addon. `ctl` loads none of that.
 */
import { packageVersion } from '../package-version.js';
import { BootImageError } from '../boot/errors.js';
import { readStateFile, SnapshotError } from '../snapshot/format.js';
import { parseCommand, USAGE } from './args.js';
import { ExitCode, UsageError } from './errors.js';

/** Write one `vmmapi: ...` line to stderr. */
function log(line: string): void {
  process.stderr.write(`vmmapi: ${line.split('\n')[0]}\n`);
}

/** Exit code for an error that escaped: usage problems and unusable images or snapshots 2, everything else 1. */
function codeFor(e: unknown): number {
  return e instanceof UsageError || e instanceof BootImageError || e instanceof SnapshotError ? ExitCode.USAGE : ExitCode.GUEST_FAILURE;
}

/** The vCPU threads of a run with `cpus` vCPUs start booting (Node, then their modules) while this thread loads the platform. */
async function prestart(cpus: number): Promise<void> {
  const { prestartVcpuWorkers } = await import('../runner/worker-pool.js');
  if (cpus >= 1 && cpus <= 255) prestartVcpuWorkers(cpus);
}

/** Run the command line `argv`; resolves to the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    const cmd = parseCommand(argv);
    if (cmd.kind === 'help') {
      process.stdout.write(USAGE);
      return ExitCode.OK;
    }
    if (cmd.kind === 'version') {
      process.stdout.write(`vmmapi ${packageVersion()}\n`);
      return ExitCode.OK;
    }
    if (cmd.kind === 'ctl') {
      const { runCtl } = await import('./ctl.js');
      return await runCtl(cmd.config, log);
    }
    if (cmd.kind === 'restore') {
      const body = readStateFile(cmd.config.dir); // SnapshotError before anything starts
      await prestart(body.machine.cpus);
      const { restoreGuest } = await import('./restore.js');
      return await restoreGuest(cmd.config, body, log);
    }
    await prestart(cmd.config.cpus);
    const { runGuest } = await import('./run.js');
    return await runGuest(cmd.config, log);
  } catch (e) {
    log(e instanceof Error ? e.message : String(e));
    return codeFor(e);
  }
}

process.on('uncaughtException', (e) => {
  log(`internal error: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(ExitCode.GUEST_FAILURE);
});
process.on('unhandledRejection', (e) => {
  log(`internal error: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(ExitCode.GUEST_FAILURE);
});

const code = await main(process.argv.slice(2));
const { closeVcpuWorkers } = await import('../runner/worker-pool.js');
await closeVcpuWorkers(); // exiting while a prestarted worker still loads aborts Node
process.exit(code);
