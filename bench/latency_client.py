#!/usr/bin/env python3
"""Status-socket and /metrics latency while something else happens (bench/latency_bench.sh).

Alternates a {"cmd":"status"} request on the status socket (a new connection each time, as
`flowshaper status` does) and a GET /metrics, every INTERVAL ms, for DURATION seconds; a request
that gets no answer within 30 s counts as failed. Prints one JSON object: count, p50, p99 and
max in ms per kind, and the same for the requests issued inside [--from-file, --until-file]
(a window the driver marks by creating files). Run it inside the daemon's network namespace.
"""
import argparse
import http.client
import json
import os
import socket
import time


def status_once(path, timeout):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(b'{"cmd":"status"}\n')
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed without an answer")
            buf += chunk
    answer = json.loads(buf.split(b"\n", 1)[0])
    if "ok" not in answer:
        raise ValueError("no ok field")


def metrics_once(hostport, timeout):
    host, port = hostport.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise ValueError("HTTP %d" % resp.status)
    finally:
        conn.close()


def summary(samples):
    if not samples:
        return {"count": 0}
    xs = sorted(samples)
    pick = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))]
    return {"count": len(xs), "p50_ms": round(pick(0.50), 2), "p99_ms": round(pick(0.99), 2),
            "max_ms": round(xs[-1], 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--metrics", required=True, help="HOST:PORT")
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--interval-ms", type=float, default=20)
    ap.add_argument("--from-file", help="window starts when this file exists")
    ap.add_argument("--until-file", help="window ends when this file exists")
    args = ap.parse_args()

    kinds = {"status": lambda: status_once(args.socket, 30), "metrics": lambda: metrics_once(args.metrics, 30)}
    all_lat = {k: [] for k in kinds}
    window = {k: [] for k in kinds}
    failed = {k: 0 for k in kinds}
    end = time.monotonic() + args.duration
    turn = 0
    while time.monotonic() < end:
        kind = "status" if turn % 2 == 0 else "metrics"
        turn += 1
        in_window = (args.from_file is None or os.path.exists(args.from_file)) and \
                    (args.until_file is None or not os.path.exists(args.until_file))
        t0 = time.monotonic()
        try:
            kinds[kind]()
        except (ConnectionRefusedError, FileNotFoundError):
            time.sleep(0.01)  # not listening yet
            continue
        except Exception:  # noqa: BLE001 - a timeout or a broken answer
            failed[kind] += 1
            continue
        ms = (time.monotonic() - t0) * 1000
        all_lat[kind].append(ms)
        if in_window:
            window[kind].append(ms)
        time.sleep(args.interval_ms / 1000)
    print(json.dumps({"all": {k: summary(v) for k, v in all_lat.items()},
                      "window": {k: summary(v) for k, v in window.items()},
                      "failed": failed}))


if __name__ == "__main__":
    main()
