#!/bin/sh
# Checks netns_run.sh cleanup: it removes its run's namespaces whose creator is gone and leaves
# those of a running creator and those of another run. Needs root (label "kernel"); uses a run id
# of its own, so it never touches the namespaces of the suite or of anyone else.
set -u
script=$(dirname "$0")/netns_run.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$script" setup "$tmp/ours" >/dev/null || exit 1
"$script" setup "$tmp/theirs" >/dev/null || exit 1
ours=$(cat "$tmp/ours")
theirs=$(cat "$tmp/theirs")
sh -c 'exit 0' &
dead=$!
wait "$dead"
[ ! -d "/proc/$dead" ] || { echo "pid $dead unexpectedly alive"; exit 1; }

dead_ns=fst-$ours-$dead-gone-0
live_ns=fst-$ours-$$-alive-0
other_ns=fst-$theirs-$dead-other-0
for ns in "$dead_ns" "$live_ns" "$other_ns"; do ip netns add "$ns" || exit 1; done

"$script" cleanup "$tmp/ours"
rc=$?
fail=0
[ $rc -eq 0 ] || { echo "FAIL: cleanup exited $rc"; fail=1; }
[ ! -e "/run/netns/$dead_ns" ] || { echo "FAIL: $dead_ns (creator gone) was kept"; fail=1; }
[ -e "/run/netns/$live_ns" ] || { echo "FAIL: $live_ns (creator alive) was removed"; fail=1; }
[ -e "/run/netns/$other_ns" ] || { echo "FAIL: $other_ns (another run) was removed"; fail=1; }
for ns in "$dead_ns" "$live_ns" "$other_ns"; do
  [ -e "/run/netns/$ns" ] && ip netns del "$ns"
done
[ $fail -eq 0 ] && echo "cleanup removed only its own run's orphaned namespace"
exit $fail
