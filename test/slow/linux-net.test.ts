/**
 * Issue 13's end-to-end test: Debian's 6.1 cloud kernel with the net initramfs
 * (scripts/fetch-linux.mjs: the kernel package's own virtio_pci, virtio_net (+ net_failover,
 * failover), vsock and vmw_vsock_virtio_transport(_common) modules, bin/vsock-line; /init in
 * netInit there) on `vmmapi run --net tap=vmtap1,mac=MAC --vsock cid=3,socket=DIR/v.sock`:
 * - the VMM runs inside a network namespace of its own (`unshare -n`, ./linux-netns.sh) holding
 *   the TAP vmtap1 at 10.213.1.1/24 and a TCP line server on 10.213.1.1:7000: the guest
 *   (eth0 10.213.1.2/24, MAC as given) sends a line with busybox nc and prints the answer, which
 *   carries this run's token;
 * - vsock, guest to host: the guest connects to CID 2 port 5000, which the VMM hands to the Unix
 *   listener at DIR/v.sock_5000 here; its answer carries the token too;
 * - vsock, host to guest: once the guest's port-5000 line is in (its port-6000 listener is up by
 *   then), a client here connects to DIR/v.sock, sends `CONNECT 6000`, expects `OK <n>`, and
 *   the guest echoes a line back.
 * Unix sockets by path cross network namespaces, so the vsock ends live in this process.
 *
 * Not here: two VMs on one in-process switch (src/net) — the CLI runs one VM per process, with
 * no way to share a switch between two, so that needs the library API, not `vmmapi run`.
 *
 * Slow (a boot to /init takes minutes on PVM hosts): only with VMMAPI_SLOW=1, like
 * linux-virtio.test.ts, whose command line (./linux-guest.ts) this shares; needs root (or
 * CAP_SYS_ADMIN + CAP_NET_ADMIN) and /dev/net/tun for the namespace and the TAP.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, KERNEL, LIMIT_MS, hostTscKhz, linuxCommandLine, requireFetched } from './linux-guest.js';
import { hostConnect, lineServer, netnsProblem, runInNetns } from './linux-net-host.js';

/** busybox + virtio-net and virtio-vsock modules + bin/vsock-line; /init: fetch-linux.mjs, netInit. */
const INITRD_NET = join(KERNEL, '..', 'initramfs-net.cpio');
const MAC = '02:00:00:13:01:02';
const GUEST_CID = 3;

describe.skipIf(!process.env.VMMAPI_SLOW)('Linux with virtio-net on a TAP and virtio-vsock (VMMAPI_SLOW=1)', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'vmmapi-net-'));
  const servers: Server[] = [];
  afterAll(() => {
    for (const s of servers) s.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('1 vCPU: TCP over eth0 to a TAP in a private namespace; vsock lines guest-to-host and host-to-guest', async () => {
    requireFetched(KERNEL, INITRD_NET);
    const problem = netnsProblem();
    if (problem) throw new Error(problem);
    const token = `${process.pid}-${Date.now()}`;
    const vsock = join(tmp, 'v.sock');

    // guest → host port 5000; once its line is in, host → guest port 6000
    let hostSide: Promise<{ ok: string; reply: string }> | undefined;
    const port5000 = await lineServer(
      `${vsock}_5000`,
      (line) => `vsock-${token} ${line}`,
      () => {
        hostSide ??= (async () => {
          // the guest listens before it connects, so one attempt should do; a few more in case
          // the VMM refuses while the guest's listener is not yet visible to it
          let last: unknown;
          for (let attempt = 0; attempt < 3; attempt++) {
            try {
              return await hostConnect(vsock, 6000, `host-${token}`, 5 * 60_000);
            } catch (e) {
              last = e;
              await new Promise((r) => setTimeout(r, 5000));
            }
          }
          throw last;
        })();
        hostSide.catch(() => {}); // awaited below
      },
    );
    servers.push(port5000.server);

    const run = await runInNetns({
      dir: tmp,
      token: `tcp-${token}`,
      limitMs: LIMIT_MS,
      command: [
        process.execPath, CLI, 'run', '--kernel', KERNEL, '--decompress-on-host', '--initrd', INITRD_NET, '--cpus', '1', '--memory', '512M',
        '--append', linuxCommandLine(hostTscKhz()),
        '--net', `tap=vmtap1,mac=${MAC}`,
        '--vsock', `cid=${GUEST_CID},socket=${vsock}`,
      ],
    });
    const { out } = run;
    const hostResult = hostSide ? await hostSide.then((r) => r, (e: Error) => e) : new Error('the guest never connected to port 5000');
    const tcpLog = existsSync(join(tmp, 'tcp.log')) ? readFileSync(join(tmp, 'tcp.log'), 'utf8') : '(no tcp.log)';
    const context = `exit ${run.code} after ${run.seconds.toFixed(0)} s\nstderr: ${run.err}\nhost-to-guest vsock: ${
      hostResult instanceof Error ? hostResult.message : JSON.stringify(hostResult)
    }\ntcp.log: ${tcpLog}\nlast output:\n${out.slice(-3000)}`;

    // the failure markers first: they say what went wrong
    expect(out.match(/VMMAPI-[\w-]*FAILED=.*/g) ?? [], context).toEqual([]);
    expect(out, context).toContain('VMMAPI-INIT-OK');
    expect(out, context).toContain('VMMAPI-NET-MODULES-OK');
    expect(out, context).toContain(`VMMAPI-ETH0-MAC=${MAC}`);
    expect(out, context).toContain('VMMAPI-ETH0=10.213.1.2/24');
    expect(out, context).toContain(`VMMAPI-TCP-REPLY=tcp-${token} hello tcp from the guest`);
    expect(tcpLog, context).toBe('hello tcp from the guest\n');

    expect(out, context).toContain('VMMAPI-VSOCK-DEVICE=found');
    expect(out, context).toContain(`VMMAPI-VSOCK-CID=${GUEST_CID}`);
    expect(port5000.lines, context).toEqual(['hello vsock from the guest']);
    expect(out, context).toContain(`VMMAPI-VSOCK-REPLY=vsock-${token} hello vsock from the guest`);
    expect(hostResult, context).not.toBeInstanceOf(Error);
    const { ok, reply } = hostResult as { ok: string; reply: string };
    expect(ok, context).toMatch(/^OK \d+$/);
    expect(reply, context).toBe(`host-${token}`);
    expect(out, context).toContain(`VMMAPI-VSOCK-LISTEN-OK=host-${token}`);

    expect(out, context).toContain('VMMAPI-NET-DONE');
    expect(run.code, context).toBe(0); // poweroff -f → ACPI S5
    console.log(`net /init done after ${run.seconds.toFixed(0)} s; CONNECT answered "${ok}"`);
  }, LIMIT_MS + 60_000);
});
