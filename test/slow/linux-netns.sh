#!/bin/sh
# The host end of test/slow/linux-net.test.ts's network, run inside the network namespace that
# test makes (`unshare -n sh linux-netns.sh ...`): nothing here can reach the host's own
# interfaces, and the TAP exists nowhere else.
#   sh linux-netns.sh DIR TOKEN CMD [ARG...]
# - lo up; TAP vmtap1 (ip tuntap), up, 10.213.1.1/24;
# - a TCP line server on 10.213.1.1:7000 ($NODE, default node): to each connection's first line
#   it answers "TOKEN LINE" and closes; each line received is appended to DIR/tcp.log; each
#   connection is dropped after 60 s, the server itself ends after $NETNS_LIMIT_S (default 3600)
#   seconds; awaited (DIR/tcp.ready) for at most 10 s;
# - then CMD ARG... (the VMM, attaching to vmtap1), whose stdout and exit status are the
#   script's; the server is stopped after it. The script's own messages go to stderr.
dir=$1
token=$2
shift 2
fail() { echo "linux-netns.sh: $*" >&2; exit 125; }
ip link set lo up || fail 'ip link set lo up failed'
ip tuntap add dev vmtap1 mode tap || fail 'ip tuntap add dev vmtap1 mode tap failed'
ip link set vmtap1 up || fail 'ip link set vmtap1 up failed'
ip addr add 10.213.1.1/24 dev vmtap1 || fail 'ip addr add 10.213.1.1/24 dev vmtap1 failed'

"${NODE:-node}" -e '
const net = require("node:net");
const fs = require("node:fs");
const [token, dir, limit] = process.argv.slice(1);
const server = net.createServer((s) => {
  let buf = "";
  s.setTimeout(60_000, () => s.destroy());
  s.on("error", () => {});
  s.on("data", (d) => {
    buf += d.toString("latin1");
    const nl = buf.indexOf("\n");
    if (nl < 0 || s.writableEnded) return;
    const line = buf.slice(0, nl);
    fs.appendFileSync(`${dir}/tcp.log`, `${line}\n`);
    s.end(`${token} ${line}\n`);
  });
});
server.listen(7000, "10.213.1.1", () => fs.writeFileSync(`${dir}/tcp.ready`, ""));
setTimeout(() => process.exit(0), Number(limit) * 1000).unref();
' "$token" "$dir" "${NETNS_LIMIT_S:-3600}" >&2 &
server=$!
n=0
while ! [ -e "$dir/tcp.ready" ]; do
  [ $n -ge 100 ] && { kill $server 2>/dev/null; fail 'the TCP server on 10.213.1.1:7000 is not listening after 10 s'; }
  sleep 0.1
  n=$((n + 1))
done

"$@"
rc=$?
kill $server 2>/dev/null
wait $server 2>/dev/null
exit $rc
