/**
 * `vmmapi ctl SOCKET COMMAND`: send one request to a run's control socket and print the
 * reply for a person (or, with --json, as it came). Exit 0 when the command succeeded, 1 when
 * it failed (the reason on stderr as `vmmapi: …`) or no reply came.
 */
import { ControlClientError, sendControlRequest } from '../control/client.js';
import type { ControlOk } from '../control/protocol.js';
import type { CtlConfig } from './ctl-args.js';
import { ExitCode } from './errors.js';

const MiB = 2 ** 20;

/** ctl's status when the command failed or got no reply. */
const FAILED = 1;

/** "128 MiB", "1.5 GiB", "512 KiB". */
export function formatBytes(n: number): string {
  if (n >= 2 ** 30) return `${+(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= MiB) return `${+(n / MiB).toFixed(1)} MiB`;
  return `${+(n / 1024).toFixed(1)} KiB`;
}

/** A device object of info as `type: key=value,…` (`rng: on` for one without fields). */
function deviceLine(d: unknown): string {
  if (typeof d !== 'object' || d === null) return `device: ${JSON.stringify(d)}`;
  const { type, ...rest } = d as Record<string, unknown>;
  const fields = Object.entries(rest).filter(([, v]) => v !== undefined);
  const text = fields.map(([k, v]) => (v === true ? k : `${k}=${v === false ? 'off' : String(v)}`)).join(',');
  return `${String(type)}: ${text || 'on'}`;
}

/** info's reply as `key: value` lines. */
export function formatInfo(r: ControlOk): string {
  const lines = [`state: ${String(r.state)}`, `vcpus: ${String(r.vcpus)}`];
  if (typeof r.memory === 'number') lines.push(`memory: ${formatBytes(r.memory)}`);
  if (typeof r.uptimeMs === 'number') lines.push(`uptime: ${(r.uptimeMs / 1000).toFixed(1)} s`);
  lines.push(`version: ${String(r.version)}`);
  if (r.pid !== undefined) lines.push(`pid: ${String(r.pid)}`);
  if (r.restoredFrom !== undefined) lines.push(`restored from: ${String(r.restoredFrom)}`);
  if (r.apiSocket !== undefined) lines.push(`api socket: ${String(r.apiSocket)}`);
  const devices = Array.isArray(r.devices) ? r.devices : [];
  if (devices.length === 0) lines.push('devices: none');
  for (const d of devices) lines.push(deviceLine(d));
  return `${lines.join('\n')}\n`;
}

/** A successful reply in words. */
export function formatReply(cmd: string, r: ControlOk): string {
  switch (cmd) {
    case 'info':
      return formatInfo(r);
    case 'snapshot': {
      const disk = typeof r.diskBytes === 'number' ? formatBytes(r.diskBytes) : '?';
      const ms = typeof r.ms === 'number' ? Math.round(r.ms) : '?';
      return `snapshot written to ${String(r.dir)}: ${disk} on disk, ${ms} ms\n`;
    }
    default:
      return `${String(r.state)}\n`;
  }
}

/** Run `vmmapi ctl`; resolves to its exit code. */
export async function runCtl(cfg: CtlConfig, log: (line: string) => void): Promise<number> {
  let reply;
  try {
    reply = await sendControlRequest(cfg.socket, cfg.request, { timeoutMs: cfg.timeout * 1000 });
  } catch (e) {
    if (!(e instanceof ControlClientError)) throw e;
    log(e.message);
    return FAILED;
  }
  if (cfg.json) process.stdout.write(`${JSON.stringify(reply)}\n`);
  if (!reply.ok) {
    log(reply.error);
    return FAILED;
  }
  if (!cfg.json) process.stdout.write(formatReply(cfg.request.cmd, reply));
  return ExitCode.OK;
}
