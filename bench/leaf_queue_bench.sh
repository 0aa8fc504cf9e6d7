#!/usr/bin/env bash
# Benchmark: a capped client's queueing delay while its class is saturated, with the kernel's
# default leaf (leaf_qdisc = "pfifo": txqueuelen packets) against flowshaper's bfifo sized by
# leaf_queue (100 ms at the class's ceil), measured alternately in the same run.
# A 5 Mbit/s cap for 10.201.0.2 on veth fsq-s of a router namespace; an iperf3 UDP flow from a
# third namespace, forwarded through the router, offers more than the cap (forwarded traffic: no
# local socket buffer holds it back), while ping from the router measures the round trip through
# the same class. Runs as root in throwaway namespaces it creates and removes.
#
# Then the goodput of 20 sequential 256 KB downloads through the same class (part 2).
#
#   bench/leaf_queue_bench.sh [BUILD_DIR] [ROUNDS] [OFFERED]    (default: build 3 8M)
set -euo pipefail
build=${1:-build}
rounds=${2:-3}
offered=${3:-8M}
fs=$(realpath "$build/src/cli/flowshaper")
srv=fsb-leafq-s-$$ cli=fsb-leafq-c-$$ snd=fsb-leafq-f-$$
work=$(mktemp -d)
cleanup() {
  ip netns pids "$srv" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns pids "$cli" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns pids "$snd" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del "$snd" 2>/dev/null || true
  ip netns del "$srv" 2>/dev/null || true
  ip netns del "$cli" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$srv"
ip netns add "$cli"
ip -n "$srv" link add fsq-s type veth peer name fsq-c netns "$cli"
ip -n "$srv" addr add 10.201.0.1/24 dev fsq-s
ip -n "$cli" addr add 10.201.0.2/24 dev fsq-c
for ns in "$srv" "$cli"; do ip -n "$ns" link set lo up; done
ip -n "$srv" link set fsq-s up
ip -n "$cli" link set fsq-c up
ip netns add "$snd"
ip -n "$snd" link add fsq-f type veth peer name fsq-g netns "$srv"
ip -n "$snd" addr add 10.202.0.2/24 dev fsq-f
ip -n "$srv" addr add 10.202.0.1/24 dev fsq-g
ip -n "$snd" link set lo up
ip -n "$snd" link set fsq-f up
ip -n "$srv" link set fsq-g up
ip -n "$snd" route add default via 10.202.0.1
ip -n "$cli" route add 10.202.0.0/24 via 10.201.0.1
ip netns exec "$srv" sysctl -qw net.ipv4.ip_forward=1
in_srv() { ip netns exec "$srv" "$@"; }

policy() {  # LEAF_QDISC
  printf '[settings]\nleaf_qdisc = "%s"\n\n[[interface]]\ndevice = "fsq-s"\nrate = "1gbit"\n\n' "$1"
  printf '[[cap]]\nname = "probe"\ndevice = "fsq-s"\nclients = ["10.201.0.2"]\nrate = "5mbit"\n'
}

# One measurement: apply, saturate, ping 50 times; prints "avg p50 p90 loss% leaf".
measure() {
  local kind=$1
  in_srv "$fs" flush >/dev/null 2>&1 || true
  policy "$kind" >"$work/p.toml"
  in_srv "$fs" apply "$work/p.toml" >/dev/null
  local leaf
  leaf=$(in_srv tc qdisc show dev fsq-s | awk '/parent f5:100 / {print $2, $NF; found=1} END {if (!found) print "pfifo(default)", "-"}')
  ip netns exec "$cli" iperf3 -s -1 -D -B 10.201.0.2 -p 5310
  sleep 0.3
  ip netns exec "$snd" iperf3 -c 10.201.0.2 -p 5310 -u -b "$offered" -l 1400 -t 9 >/dev/null 2>&1 &
  local flood=$!
  sleep 2
  in_srv ping -c 50 -i 0.1 10.201.0.2 >"$work/ping.txt" 2>&1 || true
  wait "$flood" || true
  sleep 1
  local loss
  loss=$(sed -n 's/.* \([0-9.]*\)% packet loss.*/\1/p' "$work/ping.txt")
  grep -o 'time=[0-9.]*' "$work/ping.txt" | cut -d= -f2 | sort -n >"$work/rtt.txt"
  local n
  n=$(wc -l <"$work/rtt.txt")
  if ((n == 0)); then echo "- - - $loss $leaf"; return; fi
  awk -v loss="$loss" -v leaf="$leaf" '{v[NR]=$1; s+=$1} END {
      p50=v[int((NR+1)/2)]; p90=v[int(NR*0.9) > 0 ? int(NR*0.9) : 1];
      printf "%.0f %.0f %.0f %s %s\n", s/NR, p50, p90, loss, leaf }' "$work/rtt.txt"
}

printf '%-6s %-16s %10s %10s %10s %8s   %s\n' round "leaf queue" "avg ms" "p50 ms" "p90 ms" "loss %" "kernel leaf (limit)"
for ((r = 1; r <= rounds; r++)); do
  for kind in pfifo bfifo; do
    read -r avg p50 p90 loss leaf limit < <(measure "$kind")
    printf '%-6s %-16s %10s %10s %10s %8s   %s %s\n' "$r" "$kind" "$avg" "$p50" "$p90" "$loss" "$leaf" "$limit"
  done
done
idle=$(in_srv ping -c 10 -i 0.05 -q 10.201.0.2 | sed -n 's|.*= [0-9.]*/\([0-9.]*\)/.*|\1|p')
echo "idle RTT through the same class (bfifo, no flood): ${idle} ms; offered load ${offered}bit/s into a 5mbit cap"

# Part 2: goodput of short downloads (20 sequential connections of 256 KB each from the router,
# as a scraper's range requests or an IMAP FETCH) through the same 5 Mbit/s class. TCP hands the
# qdisc GSO packets of up to 64 KiB: flowshaper's bfifo takes one whole (its floor, 73,948
# bytes); the reference "bfifo 62500" is the 100 ms size without that floor (set with tc).
cat >"$work/srv.py" <<'PY'
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.201.0.1", 8080)); s.listen(16); d = b"x" * 262144
for _ in range(20):
    c, _ = s.accept(); c.recv(16); c.sendall(d); c.close()
PY
cat >"$work/cli.py" <<'PY'
import socket, time
t = time.time(); n = 0; slowest = 0
for _ in range(20):
    a = time.time(); c = socket.create_connection(("10.201.0.1", 8080), timeout=60); c.sendall(b"GET")
    while True:
        b = c.recv(65536); n += len(b)
        if not b: break
    slowest = max(slowest, time.time() - a)
print("%.2f %.2f" % (n * 8 / (time.time() - t) / 1e6, slowest))
PY
goodput() {  # LEAF_QDISC [tc limit to force on the bfifo]
  in_srv "$fs" flush >/dev/null 2>&1 || true
  policy "$1" >"$work/p.toml"
  in_srv "$fs" apply "$work/p.toml" >/dev/null
  [[ -n ${2:-} ]] && in_srv tc qdisc replace dev fsq-s parent f5:100 handle 100: bfifo limit "$2"
  local leaf
  leaf=$(in_srv tc qdisc show dev fsq-s | awk '/parent f5:100 / {print $2, $NF; found=1} END {if (!found) print "pfifo(default)", "-"}')
  in_srv timeout 120 python3 "$work/srv.py" & local server=$!
  sleep 0.5
  read -r mbit slowest < <(ip netns exec "$cli" timeout 120 python3 "$work/cli.py")
  wait "$server" || true
  printf '%-16s %10s %10s   %s\n' "$3" "$mbit" "$slowest" "$leaf"
}
echo
printf '%-16s %10s %10s   %s\n' "leaf queue" "Mbit/s" "slowest s" "kernel leaf (limit)"
goodput bfifo "" "bfifo (floor)"
goodput bfifo 62500 "bfifo 62500"
goodput pfifo "" "pfifo"
in_srv "$fs" flush >/dev/null 2>&1 || true
