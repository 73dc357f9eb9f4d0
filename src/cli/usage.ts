/** `vmmapi --help`: the commands and every option. */
import { CPUID_BITS } from '../cpuid.js';
import { MAX_CPUS } from '../platform/layout.js';

/** The subcommands, for `vmmapi --help` (each is dispatched by parseCommand in args.ts). */
export const COMMANDS: readonly { name: string; summary: string }[] = [
  { name: 'run', summary: 'run a PC guest, or restore one from a snapshot (options below)' },
  { name: 'ctl', summary: 'send a command to a running vmmapi\'s control socket (see Control)' },
  { name: 'help', summary: 'show this help (also --help, -h)' },
  { name: 'version', summary: 'print the version of vmmapi (also --version, -V)' },
];

/** `vmmapi --help`. */
export const USAGE = `Usage: vmmapi run [options] (--bios FILE | --kernel FILE | --multiboot FILE | --flat FILE@ADDR)
       vmmapi run --restore DIR [options]
       vmmapi ctl SOCKET pause|resume|snapshot DIR [--leave-paused]|stop|info
                  [--timeout SECONDS] [--json]
       vmmapi help | --help
       vmmapi version | --version

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(9)}${c.summary}`).join('\n')}

Run a PC guest on KVM. COM1 is connected to stdin/stdout (raw mode on a terminal;
type Ctrl-A x to quit, Ctrl-A Ctrl-A to send Ctrl-A).

Boot (exactly one, or --restore):
  --bios FILE          BIOS ROM (e.g. /usr/share/seabios/bios.bin), started from reset
  --kernel FILE        Linux bzImage (or vmlinux ELF), entered in 64-bit mode with ACPI
                       tables for SMP
    --initrd FILE      initial ramdisk
    --append STR       kernel command line (default "console=ttyS0")
    --decompress-on-host  unpack a gzip/lz4 bzImage here and enter the kernel proper
                       (skips the in-guest decompressor: minutes on PVM hosts)
  --multiboot FILE     Multiboot (v1) kernel
    --append STR       kernel command line
    --module "FILE [ARGS]"  boot module (repeatable); the whole string is its command line
  --flat FILE@ADDR     flat binary copied to ADDR and entered there
    --mode MODE        real (default below 1 MiB), protected (default above) or long
  --restore DIR        continue the guest a snapshot in DIR holds (vmmapi ctl SOCKET
                       snapshot DIR wrote it), with COM1 on stdio; its devices are reopened
                       as the snapshotted run had them. --disk, --net, --vsock, --console
                       and --debugcon replace the stored ones of their kind (a clone with
                       its own disk image, MAC or CID; same number of each); files are
                       appended to. The other boot options, --cpus, --memory,
                       --clear-cpuid, --debug-exit and --no-emulate are refused: the
                       snapshot fixes them

Machine:
  --cpus N             vCPUs, 1-${MAX_CPUS} (default 1)
  --memory SIZE        RAM, e.g. 256M, 1G; a bare number is MiB (default 128M)
  --clear-cpuid LIST   hide CPUID features from the guest, comma-separated
                       (${Object.keys(CPUID_BITS).join(', ')})
  --debugcon FILE|-    write the debug console (port 0x402) to FILE, or stdout with -
  --debug-exit PORT[,size=N]  put the isa-debug-exit device at PORT, claiming N ports
                       (1, 2 or 4; default 0x501,size=2); e.g. 0xf4,size=4
  --no-emulate         do not finish instructions KVM's emulator gives up on (PVM hosts):
                       such an instruction then ends the run with its bytes
  --engine kvm|cpl0    who runs 64-bit ring-0 code: KVM (default), or cpl0, vmmapi's own
                       engine (experimental; KVM still runs user mode and other modes)

Devices (virtio over PCI):
  --disk path=FILE[,readonly=on]  a virtio-blk disk on the raw image FILE (repeatable;
                       --disk FILE also works)
  --rng                a virtio-rng device (host entropy)
  --console file=PATH|socket=PATH|tty|off  the virtio console (the guest's hvc0) to a
                       file, a Unix socket vmmapi listens on (output from before the
                       first client connects is kept for it, up to 64 KiB), or stdout
                       (default off; COM1 stays on stdin/stdout)
  --net tap=NAME[,mac=MAC] | socket=PATH[,mac=MAC]  a virtio-net device on a TAP
                       interface or a stream socket (QEMU's protocol, e.g. passt's)
                       (repeatable)
  --vsock cid=N,socket=PATH  a virtio-vsock device for guest CID N; host clients connect
                       to PATH, guest connections to port P go to PATH_P

Run control:
  --api-socket PATH    listen on the Unix socket PATH for control commands (vmmapi ctl,
                       or newline-delimited JSON: {"cmd":"pause"}); refused if another
                       process listens there, a stale socket is replaced; removed at exit
  --timeout SECONDS    stop the guest after SECONDS and exit with status 124
  --trace-exits        print one line per VM exit on stderr (and the instructions the
                       userspace fallback finished, per mnemonic)
  --status             a one-line status on stderr while the guest prints nothing
                       (default on a terminal; --no-status turns it off)
  -h, --help           show this help
  -V, --version        print the version

Control (vmmapi ctl SOCKET COMMAND, to a run's --api-socket):
  pause                stop the vCPUs (posted writes and virtio I/O completed first)
  resume               continue a paused guest
  snapshot DIR         write a snapshot to DIR (created; one there is replaced): pauses a
                       running guest for it and resumes it after, unless --leave-paused;
                       vmmapi run --restore DIR continues from it
  stop                 end the run (vmmapi run then exits 0)
  info                 state (running/paused), vCPUs, memory, uptime, devices, version
  --timeout SECONDS    wait at most SECONDS for the reply (default 30)
  --json               print the reply as it came (one JSON line)
  ctl exits 0 when the command succeeded, 1 when it failed or no reply came, 2 on usage
  errors.

Exit status: the guest's isa-debug-exit status ((value << 1) | 1, low 8 bits: always odd);
0 when the guest powers off, asks for a reset or is stopped by vmmapi ctl stop; 1 when the
guest fails (KVM internal error, triple fault) or the VMM does; 2 on usage errors, unusable
images and snapshots (truncated, corrupt, for another machine); 4 when every vCPU halted
with interrupts disabled; 124 on timeout; 130/143 on SIGINT/SIGTERM.
--trace-exits says why the run ended.
`;
