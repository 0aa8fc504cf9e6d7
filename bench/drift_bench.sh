#!/usr/bin/env bash
# Drift repair benchmark of `flowshaper run` (issue 10), in throwaway namespaces (root needed):
#  1. time from a deletion to the repaired state, for the root qdisc, one class (without
#     filters), one u32 filter and the mangle chain (flushed), 20 runs each, median and max,
#     measured from outside by polling `tc` / `iptables-legacy-save` until the text is what it
#     was before the deletion; runs are spaced 2.2 s apart so that the daemon's back-off against
#     a tool that keeps deleting (more than 5 repairs in 10 s) stays out of the figures;
#  2. the daemon's CPU time when nothing changes: idle for IDLE_S seconds (default 60) with
#     poll_interval 1 s, utime+stime from /proc/PID/stat, scaled to an hour.
#   bench/drift_bench.sh [BUILD_DIR] [RUNS]
set -euo pipefail
build=${1:-build}
runs=${2:-20}
idle_s=${IDLE_S:-60}
fs=$(realpath "$build/src/cli/flowshaper")
srv=fsd-srv-$$ cli=fsd-cli-$$
work=$(mktemp -d)
daemon=
cleanup() {
  [[ -n $daemon ]] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
  for ns in "$srv" "$cli"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
S() { ip netns exec "$srv" "$@"; }
ip netns add "$srv"; ip netns add "$cli"
ip link add veth-s netns "$srv" type veth peer name veth-c netns "$cli"
S ip link set lo up; ip -n "$cli" link set lo up
S ip addr add 10.200.0.1/24 dev veth-s; ip -n "$cli" addr add 10.200.0.2/24 dev veth-c
S ip link set veth-s up; ip -n "$cli" link set veth-c up

cat >"$work/policy.toml" <<TOML
[settings]
poll_interval = "1s"
firewall = "iptables"

[[interface]]
device = "veth-s"
rate = "1gbit"
default_class = "normal"

[[interface.class]]
name = "normal"
rate = "500mbit"
ceil = "1gbit"

[[interface.class]]
name = "bulk"
rate = "100mbit"
ceil = "1gbit"

[[cap]]
name = "customer"
device = "veth-s"
clients = ["10.200.0.7"]
rate = "5mbit"
ceil = "10mbit"
TOML
S "$fs" run "$work/policy.toml" >"$work/daemon.log" 2>&1 &
daemon=$!
for _ in $(seq 300); do grep -q "ready" "$work/daemon.log" && break; sleep 0.1; done
grep -q "ready" "$work/daemon.log" || { echo "daemon did not start:"; cat "$work/daemon.log"; exit 1; }
sleep 1

tc_tree() { S tc qdisc show dev veth-s; S tc class show dev veth-s; S tc filter show dev veth-s parent f5:; }
# The filter's repair recreates the client's class under a new classid (a product bug, see the
# fault suite), so "repaired" for a filter means: the client's u32 node is back, as many classes.
client_filter() { S tc filter show dev veth-s parent f5: | grep -c '0ac80007/ffffffff'; S tc class show dev veth-s | wc -l; }
mangle() { S iptables-legacy-save -t mangle | grep -v '^#' | sed 's/ \[[0-9:]*\]$//'; }
now_ns() { date +%s%N; }

# measure NAME READER DAMAGE...: prints "NAME median max" over $runs runs (ms).
measure() {
  local name=$1 reader=$2; shift 2
  local times=() before t0 t1 i
  for ((i = 0; i < runs; i++)); do
    sleep 2.2
    before=$($reader)
    t0=$(now_ns)
    "$@" >/dev/null 2>&1
    until [[ "$($reader)" == "$before" ]]; do
      if (( ($(now_ns) - t0) / 1000000 > 10000 )); then echo "$name: not repaired within 10 s" >&2; tail "$work/daemon.log" >&2; exit 1; fi
    done
    t1=$(now_ns)
    times+=("$(( (t1 - t0) / 1000 ))")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v name="$name" '
    { v[NR] = $1 / 1000 } END { printf "%-28s median %7.1f ms   max %7.1f ms   (%d runs)\n", name, v[int((NR + 1) / 2)], v[NR], NR }'
}

bulk=$(S tc class show dev veth-s | awk '/rate 100Mbit/ { print $3; exit }')
filter_line=$(S tc filter show dev veth-s parent f5: | grep -B1 '0ac80007/ffffffff' | grep ' fh ')
fh=$(awk '{ for (i = 1; i <= NF; i++) if ($i == "fh") print $(i + 1) }' <<<"$filter_line")
pref=$(awk '{ for (i = 1; i <= NF; i++) if ($i == "pref") print $(i + 1) }' <<<"$filter_line")

echo "== time from a deletion to the repaired state (poll_interval 1 s, iptables backend)"
measure "root qdisc" tc_tree S tc qdisc del dev veth-s root
measure "class $bulk (no filters)" tc_tree S tc class del dev veth-s classid "$bulk"
measure "u32 filter $fh" client_filter S tc filter del dev veth-s parent f5: protocol ip prio "$pref" handle "$fh" u32
measure "mangle chain flushed" mangle S iptables-legacy -t mangle -F FLOWSHAPER
echo "   repairs counted by the daemon: $(grep -c "repaired flowshaper's objects" "$work/daemon.log")"

echo "== CPU time when nothing changes (${idle_s} s idle, poll_interval 1 s)"
sleep 3
ticks() { awk '{ print $14 + $15 }' "/proc/$daemon/stat"; }
hz=$(getconf CLK_TCK)
c0=$(ticks); t0=$(now_ns)
sleep "$idle_s"
c1=$(ticks); t1=$(now_ns)
awk -v c="$((c1 - c0))" -v hz="$hz" -v ns="$((t1 - t0))" 'BEGIN {
  s = c / hz; wall = ns / 1e9
  printf "   %.2f s CPU in %.1f s -> %.1f s CPU per hour (%.3f%% of one core)\n", s, wall, s * 3600 / wall, 100 * s / wall }'
