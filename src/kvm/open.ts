/**
 * Opening /dev/kvm with a message a newcomer can act on: a permission failure names the
 * device, who may open it and the fix, instead of the bare "open failed: EACCES".
 */
import { readFileSync, statSync } from 'node:fs';
import { KvmError } from '../errors.js';
import { native, type NativeKvmSystem } from './native.js';

/** The KVM device node. */
export const KVM_DEVICE = '/dev/kvm';

/** The name of group `gid` from /etc/group, or its number. */
function groupName(gid: number): string {
  try {
    for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
      const [name, , id] = line.split(':');
      if (name && Number(id) === gid) return name;
    }
  } catch {
    /* no /etc/group: the number will do */
  }
  return String(gid);
}

/** "owned by root:kvm, mode 0660" for `path`, or '' if it cannot be read. */
function describeNode(path: string): string {
  try {
    const st = statSync(path);
    const owner = st.uid === 0 ? 'root' : String(st.uid);
    return `${path} is owned by ${owner}:${groupName(st.gid)} with mode 0${(st.mode & 0o777).toString(8)}`;
  } catch {
    return '';
  }
}

/**
 * The message for a failed open of `path` with errno `code`, or undefined to keep the
 * addon's own. Exported for tests.
 */
export function openFailureMessage(path: string, code: string): string | undefined {
  if (code === 'EACCES' || code === 'EPERM') {
    const node = describeNode(path);
    let gid = -1;
    try {
      gid = statSync(path).gid;
    } catch {
      /* described as unknown below */
    }
    const group = gid > 0 ? groupName(gid) : 'kvm';
    const fix =
      gid > 0
        ? `add your user to the ${group} group (sudo usermod -aG ${group} "$USER", then log in again), or run as root`
        : `run as root, or let the kvm group use it (sudo chgrp kvm ${path} && sudo chmod 660 ${path}; then sudo usermod -aG kvm "$USER" and log in again)`;
    return `cannot open ${path}: permission denied (${code})${node ? `; ${node}` : ''}: ${fix}`;
  }
  if (code === 'ENOENT') return `cannot open ${path}: no such device (ENOENT): KVM is not available on this host (load kvm_intel or kvm_amd; inside a VM, nested virtualization must be enabled)`;
  if (code === 'ENXIO' || code === 'ENODEV') return `cannot open ${path}: ${code}: the KVM module is loaded but has no usable hardware support (check the BIOS virtualization setting and dmesg)`;
  return undefined;
}

/**
 * Open the KVM system device (`/dev/kvm` unless `path` is given).
 *
 * @throws KvmError (syscall `'open'`, the errno's `code`) whose message names the device
 *   and the fix for EACCES/EPERM (the device's group, or root) and ENOENT (no KVM).
 */
export function openKvmSystem(path: string = KVM_DEVICE): NativeKvmSystem {
  if (typeof path !== 'string' || path === '') throw new TypeError(`path must be a non-empty string, got ${String(path)}`);
  const n = native();
  try {
    return new n.KvmSystem(path);
  } catch (e) {
    if (!(e instanceof KvmError)) throw e;
    const message = openFailureMessage(path, e.code);
    if (message === undefined) throw e;
    throw new KvmError(message, e.code, e.errno, e.syscall);
  }
}
