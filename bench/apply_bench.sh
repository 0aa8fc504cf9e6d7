#!/usr/bin/env bash
# Benchmark: building N static per-client caps on one device, flowshaper apply against
# `tc -batch` running the `flowshaper plan --format tc` script of the same tree, in the same run;
# then re-applying the unchanged policy and adding one client (incremental reconcile).
# Runs as root in a throwaway network namespace it creates and removes.
#
#   bench/apply_bench.sh [BUILD_DIR] [N...]        (default: build 1000 10000)
set -euo pipefail
build=${1:-build}; shift || true
sizes=("$@"); ((${#sizes[@]})) || sizes=(1000 10000)
fs=$(realpath "$build/src/cli/flowshaper")
ns=fsb-apply-$$
work=$(mktemp -d)
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link add bench0 type veth peer name bench1
ip -n "$ns" link set bench0 up
ip -n "$ns" link set bench1 up
in_ns() { ip netns exec "$ns" "$@"; }
now_ms() { date +%s%3N; }

policy() {  # N [extra client]
  local n=$1 extra=${2:-}
  printf '[[interface]]\ndevice = "bench0"\nrate = "10gbit"\n\n[[cap]]\nname = "customers"\ndevice = "bench0"\nrate = "5mbit"\nceil = "10mbit"\nclients = [\n'
  for ((i = 0; i < n; i++)); do printf '  "10.%d.%d.%d",\n' $((i >> 16 & 255)) $((i >> 8 & 255)) $((i & 255)); done
  [[ -n $extra ]] && printf '  "%s",\n' "$extra"
  printf ']\n'
}

printf '%-8s %-34s %10s %10s %8s\n' clients measurement flowshaper "tc -batch" ratio
for n in "${sizes[@]}"; do
  policy "$n" >"$work/p.toml"
  policy "$n" 10.250.0.1 >"$work/p1.toml"
  in_ns "$fs" plan --format tc "$work/p.toml" >"$work/p.tc" 2>/dev/null
  objects=$(wc -l <"$work/p.tc")

  # Five rounds, alternating, median of each: the kernel's work dominates both. After each
  # teardown the kernel frees the old tree in the background: wait for that before timing.
  tc_runs=() fs_runs=()
  for round in 1 2 3 4 5; do
    t0=$(now_ms); in_ns tc -batch "$work/p.tc"; t1=$(now_ms)
    tc_runs+=($((t1 - t0)))
    tc_classes=$(in_ns tc class show dev bench0 | wc -l)
    in_ns tc qdisc del dev bench0 root
    sleep 2
    t0=$(now_ms); in_ns "$fs" apply "$work/p.toml" >/dev/null; t1=$(now_ms)
    fs_runs+=($((t1 - t0)))
    fs_classes=$(in_ns tc class show dev bench0 | wc -l)
    [[ $fs_classes == "$tc_classes" ]] || { echo "tree mismatch: $fs_classes vs $tc_classes classes" >&2; exit 1; }
    ((round == 5)) || { in_ns "$fs" flush >/dev/null; sleep 2; }
  done
  median() { printf '%s\n' "$@" | sort -n | sed -n 3p; }
  tc_ms=$(median "${tc_runs[@]}") fs_ms=$(median "${fs_runs[@]}")
  printf '%-8s %-34s %8sms %8sms %8s   (runs: flowshaper %s, tc %s)\n' "$n" "full build ($objects objects)" "$fs_ms" "$tc_ms" \
    "$(awk -v a="$fs_ms" -v b="$tc_ms" 'BEGIN{printf "%.2f", (b>0? a/b : 0)}')" "${fs_runs[*]}" "${tc_runs[*]}"

  t0=$(now_ms); out=$(in_ns "$fs" apply "$work/p.toml"); t1=$(now_ms)
  printf '%-8s %-34s %8sms %10s %8s   (%s)\n' "$n" "re-apply unchanged" $((t1 - t0)) - - "$out"

  t0=$(now_ms); out=$(in_ns "$fs" apply "$work/p1.toml"); t1=$(now_ms)
  printf '%-8s %-34s %8sms %10s %8s   (%s)\n' "$n" "add one client" $((t1 - t0)) - - "$out"
  in_ns "$fs" flush >/dev/null
done
echo "ratio = flowshaper / tc -batch (below 1: flowshaper is faster)"
