#!/usr/bin/env bash
# The demo: installs what is needed, builds, and shows flowshaper detecting a heavy client,
# marking its packets and capping it — in two throwaway network namespaces joined by a veth
# pair, removed again at the end (also on Ctrl-C). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "run as root: the demo creates network namespaces" >&2; exit 1; }
tools/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target flowshaper >/dev/null
fs=$(realpath build/src/cli/flowshaper)

srv=fsdemo-server-$$ cli=fsdemo-client-$$
work=$(mktemp -d)
daemon=
cleanup() {
  [[ -n $daemon ]] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
  ip netns pids "$srv" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns pids "$cli" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del "$srv" 2>/dev/null || true
  ip netns del "$cli" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
S() { ip netns exec "$srv" "$@"; }
C() { ip netns exec "$cli" "$@"; }

ip netns add "$srv"; ip netns add "$cli"
ip link add veth-s netns "$srv" type veth peer name veth-c netns "$cli"
S ip link set lo up; C ip link set lo up
S ip addr add 10.200.0.1/24 dev veth-s
C ip addr add 10.200.0.2/24 dev veth-c     # the mailbox that syncs in a loop
C ip addr add 10.200.0.3/24 dev veth-c     # an ordinary client
S ip link set veth-s up; C ip link set veth-c up

cat >"$work/demo.toml" <<'TOML'
# A server on veth-s (1 Gbit/s). A client that pulls more than 50 MB through one connection to
# port 5201 is heavy: its packets get DSCP CS1 and it is held to 10 Mbit/s until it has been
# quiet for 20 s. Anyone else keeps full speed.
[settings]
poll_interval = "250ms"

[[interface]]
device = "veth-s"
rate = "1gbit"

[[detect]]
name = "bulk-download"
device = "veth-s"
protocol = "tcp"
local_ports = [5201]
flow_bytes = "50MB"
dscp = "CS1"
limit = { rate = "10mbit" }
release_after = "20s"
TOML
# The status socket, for `flowshaper status` below (a throwaway path for the demo).
sed -i "s|^poll_interval = .*|&\nstatus_socket = \"$work/fs.sock\"|" "$work/demo.toml"

say "the policy, checked, and what flowshaper will build"
"$fs" check "$work/demo.toml" && echo "$work/demo.toml: valid"
S "$fs" plan "$work/demo.toml"

say "flowshaper run (log below, prefixed with 'log:')"
ip netns exec "$srv" "$fs" run "$work/demo.toml" > >(sed -u 's/^/log: /') 2>&1 &  # $! is flowshaper itself
daemon=$!
for _ in $(seq 100); do S "$fs" status --socket "$work/fs.sock" >/dev/null 2>&1 && break; sleep 0.1; done
sleep 0.5

say "two clients download at once for 12 s: 10.200.0.2 from port 5201 (the rule's port), 10.200.0.3 from 5202"
S iperf3 -s -1 -D -p 5201; S iperf3 -s -1 -D -p 5202; sleep 0.3
C timeout 14 tcpdump -i veth-c -n -s 96 -w "$work/cap.pcap" 'tcp src port 5201' >/dev/null 2>&1 &
sleep 0.5
C iperf3 -c 10.200.0.1 -B 10.200.0.3 -p 5202 -R -t 12 -f m >"$work/light.txt" 2>&1 &
light=$!
C iperf3 -c 10.200.0.1 -B 10.200.0.2 -p 5201 -R -t 12 -f m -i 1 | grep -E '^\[ *[0-9]+\] +[0-9]' | sed 's/^/heavy 10.200.0.2: /'
wait "$light" || true
grep -E 'receiver' "$work/light.txt" | sed 's/^/light 10.200.0.3: /'

say "what the kernel says (not flowshaper): classes, connection marks, DSCP on the wire"
S tc -s class show dev veth-s | grep -E '^class|Sent'
S conntrack -L -p tcp --orig-port-dst 5201 2>/dev/null | grep -E 'mark=[1-9]' | head -3 | sed 's/^/conntrack: /' || true
sleep 1.5
echo "packets from port 5201 captured on the client side, by DSCP:"
tshark -r "$work/cap.pcap" -T fields -e ip.dsfield.dscp 2>/dev/null | sort | uniq -c | awk '{printf "  dscp %s: %s packets\n", $2, $1}'

say "flowshaper status: who is capped, why (measured against the threshold), until when"
S "$fs" status --socket "$work/fs.sock"

say "the mangle rules flowshaper keeps (nftables table, or the legacy iptables chain)"
S nft list table inet flowshaper 2>/dev/null || S iptables-legacy-save -t mangle | grep FLOWSHAPER

say "SIGTERM: flowshaper removes its chain, classes and marks"
kill -TERM "$daemon"; wait "$daemon" || true; daemon=
S tc qdisc show dev veth-s
S iptables-legacy-save -t mangle | grep -c FLOWSHAPER | sed 's/^/FLOWSHAPER lines left in legacy mangle: /' || true
S nft list tables | grep -c flowshaper | sed 's/^/flowshaper nft tables left: /' || true
