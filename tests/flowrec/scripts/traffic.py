#!/usr/bin/env python3
# Test traffic for the collector test. "server PORT": answers every 2000 bytes received with 1000
# bytes, until EOF. "client HOST PORT SRC SECONDS BYTES": one connection from SRC that sends BYTES
# in 2000-byte chunks spread over SECONDS (at least one chunk every 100 ms), then closes.
import socket, sys, threading, time

def serve(port):
    s = socket.socket(socket.AF_INET6)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('::', port))
    s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=answer, args=(c,), daemon=True).start()

def answer(c):
    pending = 0
    while True:
        d = c.recv(65536)
        if not d:
            break
        pending += len(d)
        while pending >= 2000:
            c.sendall(b'r' * 1000)
            pending -= 2000
    c.close()

def client(host, port, src, seconds, total):
    fam = socket.AF_INET6 if ':' in host else socket.AF_INET
    s = socket.socket(fam)
    s.bind((src, 0))
    s.connect((host, port))
    chunks = max(1, total // 2000)
    gap = seconds / chunks
    start = time.time()
    for i in range(chunks):
        s.sendall(b'q' * 2000)
        delay = start + (i + 1) * gap - time.time()
        if delay > 0:
            time.sleep(delay)
    s.shutdown(socket.SHUT_WR)
    while s.recv(65536):
        pass
    s.close()

if sys.argv[1] == 'server':
    serve(int(sys.argv[2]))
else:
    client(sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]), int(sys.argv[6]))
