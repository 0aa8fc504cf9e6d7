#!/usr/bin/env bash
# Benchmarks of `flowshaper run`, in throwaway namespaces (root needed):
#  1. detection latency: from the captured packet that takes a connection past flow_bytes to the
#     first captured packet carrying the rule's DSCP, against one poll interval + 50 ms; and the
#     same measured for the kernel-side alternative (an xt_connbytes rule doing the marking);
#  2. data path: iperf3 throughput of an ordinary client through the device while flowshaper has
#     10,000 static per-client caps and one heavy client capped, against a twin device (its own
#     namespace pair, same addresses) with no flowshaper state, measured alternately in the same
#     run so that the machine's drift hits both alike; and the same device before and after.
#   bench/daemon_bench.sh [BUILD_DIR]
# FIREWALL=nftables|iptables|both (default iptables): the daemon's mangle backend (firewall = ...);
# both: the data path on each in turn, against the same twin, in one run (the latency part uses
# iptables then). ONLY=datapath: the data path part alone. ROUNDS=n: rounds per backend (9).
# PARTS=1: also the tree alone (no netfilter, no conntrack), then the tree with conntrack, against
# the twin: where the cost is.
set -euo pipefail
build=${1:-build}
firewall=${FIREWALL:-iptables}
only=${ONLY:-}
fs=$(realpath "$build/src/cli/flowshaper")
srv=fsb-srv-$$ cli=fsb-cli-$$ srv2=fsb-srv2-$$ cli2=fsb-cli2-$$
work=$(mktemp -d)
daemon=
cleanup() {
  [[ -n $daemon ]] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
  for ns in "$srv" "$cli" "$srv2" "$cli2"; do ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true; ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
S() { ip netns exec "$srv" "$@"; }
C() { ip netns exec "$cli" "$@"; }
pair() {  # server namespace, client namespace
  ip netns add "$1"; ip netns add "$2"
  ip link add veth-s netns "$1" type veth peer name veth-c netns "$2"
  ip -n "$1" link set lo up; ip -n "$2" link set lo up
  ip -n "$1" addr add 10.200.0.1/24 dev veth-s
  ip -n "$2" addr add 10.200.0.2/24 dev veth-c
  ip -n "$2" addr add 10.200.0.3/24 dev veth-c
  ip -n "$1" link set veth-s up; ip -n "$2" link set veth-c up
}
pair "$srv" "$cli"
pair "$srv2" "$cli2"  # the twin: never touched by flowshaper

poll_ms=250
threshold=50000000
rule() {
  cat <<TOML
[[detect]]
name = "bulk"
device = "veth-s"
protocol = "tcp"
local_ports = [5201]
flow_bytes = "${threshold}B"
dscp = "CS1"
limit = { rate = "10mbit" }
release_after = "10m"
TOML
}
start_daemon() {
  ip netns exec "$srv" taskset -c 1 "$fs" run "$1" >"$work/daemon.log" 2>&1 &  # $! is flowshaper itself
  daemon=$!
  for _ in $(seq 1200); do grep -q "ready" "$work/daemon.log" && return 0; sleep 0.1; done
  echo "daemon did not start:"; cat "$work/daemon.log"; exit 1
}
stop_daemon() { kill -TERM "$daemon"; wait "$daemon" || true; daemon=; }

# Latency from a capture: cumulative IP bytes of the server->client direction cross the
# threshold at packet k; the first packet with DSCP 8 is packet m; latency = t(m) - t(k).
latency_ms() {
  tshark -r "$1" -T fields -e frame.time_epoch -e ip.len -e ip.dsfield.dscp 2>/dev/null |
    awk -v thr="$threshold" '{ sum += $2; if (!crossed && sum >= thr) { crossed = $1 }
                                if ($3 == 8 && !marked) { marked = $1 } }
                              END { if (crossed && marked) printf "%.1f", (marked - crossed) * 1000; else print "n/a" }'
}
download_captured() {  # pcap file
  S iperf3 -s -1 -D -p 5201; sleep 0.3
  C timeout 20 tcpdump -i veth-c -n -s 96 -w "$1" 'tcp src port 5201' >/dev/null 2>&1 &
  local cap=$!
  sleep 0.5
  C iperf3 -c 10.200.0.1 -B 10.200.0.2 -p 5201 -R -t 4 -b 400m >/dev/null
  sleep 0.5; kill "$cap" 2>/dev/null || true; wait "$cap" 2>/dev/null || true
}

echo "== detection latency (flow_bytes ${threshold} B, client downloading at 400 Mbit/s)"
{ printf '[settings]\npoll_interval = "%sms"\nfirewall = "%s"\n\n[[interface]]\ndevice = "veth-s"\nrate = "10gbit"\n\n' "$poll_ms" "${firewall/both/iptables}"; rule; } >"$work/lat.toml"
for run in 1 2 3; do
  [[ $only == datapath ]] && break
  # A new daemon counts what the table holds at its start (a finished 50 MB connection would
  # make the client heavy at once): start each run from an empty table.
  S conntrack -F >/dev/null 2>&1 || true
  start_daemon "$work/lat.toml"
  download_captured "$work/lat$run.pcap"
  stop_daemon
  printf 'flowshaper (poll %s ms), run %s: %s ms   (target: at most %s ms)\n' "$poll_ms" "$run" "$(latency_ms "$work/lat$run.pcap")" $((poll_ms + 50))
done
# The kernel-side alternative: xt_connbytes marks the packet that crosses the threshold itself.
S conntrack -F >/dev/null 2>&1 || true
S iptables-legacy -t mangle -A POSTROUTING -p tcp --sport 5201 -m connbytes --connbytes "$threshold": \
  --connbytes-dir reply --connbytes-mode bytes -j DSCP --set-dscp 8
[[ $only == datapath ]] || download_captured "$work/cb.pcap"
[[ $only == datapath ]] || printf 'xt_connbytes rule (kernel), for comparison: %s ms\n' "$(latency_ms "$work/cb.pcap")"
S iptables-legacy -t mangle -F POSTROUTING

# Both ends of the measured download run on CPU 0: unpinned, veth throughput here jumps between
# ~35 and ~75 Gbit/s with the scheduler's placement; pinned, runs agree within ~10%. The heavy
# client's download and the daemon run on CPU 1.
measure_once() {  # server ns, client ns: Mbit/s of a 3 s download by 10.200.0.3 from port 5202
  ip netns exec "$1" taskset -c 0 iperf3 -s -1 -D -p 5202; sleep 0.3
  ip netns exec "$2" taskset -c 0 iperf3 -c 10.200.0.1 -B 10.200.0.3 -p 5202 -R -t 3 -J |
    python3 -c 'import json,sys; print("%.0f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e6))'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
rounds=${ROUNDS:-9}
before=$(for _ in 1 2 3; do measure_once "$srv" "$cli"; done | median)
datapath() {  # firewall backend
  echo
  echo "== data path (firewall = $1): an ordinary client's download, 10,000 caps + one heavy client vs. no flowshaper state"
  { printf '[settings]\npoll_interval = "%sms"\nfirewall = "%s"\n\n[[interface]]\ndevice = "veth-s"\nrate = "100gbit"\n\n' "$poll_ms" "$1"
    printf '[[cap]]\nname = "customers"\ndevice = "veth-s"\nrate = "5mbit"\nclients = [\n'
    for ((i = 0; i < 10000; i++)); do printf '  "10.%d.%d.%d",\n' $((100 + (i >> 16 & 255))) $((i >> 8 & 255)) $((i & 255)); done
    printf ']\n\n'; rule; } >"$work/dp.toml"
  S conntrack -F >/dev/null 2>&1 || true
  start_daemon "$work/dp.toml"
  S taskset -c 1 iperf3 -s -1 -D -p 5201; sleep 0.3
  C taskset -c 1 iperf3 -c 10.200.0.1 -B 10.200.0.2 -p 5201 -R -t $((rounds * 8 + 10)) >/dev/null 2>&1 &
  local heavy=$!
  for _ in $(seq 100); do grep -q "mark client=10.200.0.2" "$work/daemon.log" && break; sleep 0.1; done
  grep -q "mark client=10.200.0.2" "$work/daemon.log" || { echo "heavy client not detected"; cat "$work/daemon.log"; exit 1; }
  # The class follows the decision the log line announces (~0.3-0.5 s with 10,000 classes):
  # root, default, 10,000 caps and the heavy client's.
  local classes
  for _ in $(seq 50); do classes=$(S tc class show dev veth-s | wc -l); ((classes >= 10003)) && break; sleep 0.1; done
  grep -m1 "firewall:" "$work/daemon.log"
  : >"$work/with"; : >"$work/twin"; : >"$work/ratios"
  local r w t
  for ((r = 0; r < rounds; r++)); do
    w=$(measure_once "$srv" "$cli"); t=$(measure_once "$srv2" "$cli2")
    echo "$w" >>"$work/with"; echo "$t" >>"$work/twin"
    awk -v a="$w" -v b="$t" 'BEGIN { printf "%.3f\n", a / b }' >>"$work/ratios"
  done
  kill "$heavy" 2>/dev/null || true; wait "$heavy" 2>/dev/null || true
  stop_daemon
  local with twin
  with=$(median <"$work/with") twin=$(median <"$work/twin")
  printf 'flowshaper (%s), %s classes, heavy client capped meanwhile: %s Mbit/s (median of %s: %s)\n' \
    "$1" "$classes" "$with" "$rounds" "$(tr '\n' ' ' <"$work/with")"
  printf 'twin device, no flowshaper state, alternating with it: %s Mbit/s (median of %s: %s)\n' \
    "$twin" "$rounds" "$(tr '\n' ' ' <"$work/twin")"
  awk -v a="$with" -v b="$twin" 'BEGIN { printf "ratio of the medians: %.2f\n", a / b }'
  # Each round's pair is measured seconds apart: the median of the per-round ratios is the
  # figure least moved by the machine's drift between rounds.
  printf 'median of the %s per-round ratios: %.2f (%s) (target: at least %s)\n' "$rounds" \
    "$(median <"$work/ratios")" "$(tr '\n' ' ' <"$work/ratios")" "$([[ $1 == nftables ]] && echo 0.95 || echo 0.90)"
}
# PARTS=1: where the cost is, the tree alone (`flowshaper apply` of the 10,000 caps: HTB and the
# u32 filters, no netfilter, no conntrack) against the same twin, before the daemon's runs.
tree_alone() {
  echo
  echo "== data path, the tree alone (flowshaper apply: 10,000 caps, no mangle rules, no conntrack)"
  { printf '[[interface]]\ndevice = "veth-s"\nrate = "100gbit"\n\n'
    printf '[[cap]]\nname = "customers"\ndevice = "veth-s"\nrate = "5mbit"\nclients = [\n'
    for ((i = 0; i < 10000; i++)); do printf '  "10.%d.%d.%d",\n' $((100 + (i >> 16 & 255))) $((i >> 8 & 255)) $((i & 255)); done
    printf ']\n'; } >"$work/tree.toml"
  S "$fs" apply "$work/tree.toml" >/dev/null
  rounds_against_twin
  # Then the tree and conntrack: one nft rule that needs conntrack, byte accounting on, as the
  # daemon has it, but none of flowshaper's mangle rules.
  echo "== data path, the tree and conntrack (accounting on; one nft rule, no flowshaper mangle rules)"
  S sysctl -qw net.netfilter.nf_conntrack_acct=1
  S nft add table inet fsbench
  S nft add chain inet fsbench post '{ type filter hook postrouting priority mangle; policy accept; }'
  S nft add rule inet fsbench post ct state new accept
  rounds_against_twin
  S nft delete table inet fsbench
  S "$fs" flush >/dev/null
}
rounds_against_twin() {
  : >"$work/ratios"
  local r w t
  for ((r = 0; r < rounds; r++)); do
    w=$(measure_once "$srv" "$cli"); t=$(measure_once "$srv2" "$cli2")
    awk -v a="$w" -v b="$t" 'BEGIN { printf "%.3f\n", a / b }' >>"$work/ratios"
  done
  printf 'median of the %s per-round ratios against the twin: %.2f (%s)\n' "$rounds" \
    "$(median <"$work/ratios")" "$(tr '\n' ' ' <"$work/ratios")"
}
[[ -n ${PARTS:-} ]] && tree_alone
if [[ $firewall == both ]]; then datapath nftables; datapath iptables; else datapath "$firewall"; fi
after=$(for _ in 1 2 3; do measure_once "$srv" "$cli"; done | median)
printf '\nsame device with no flowshaper state, for reference: before %s, after %s Mbit/s\n' "$before" "$after"
