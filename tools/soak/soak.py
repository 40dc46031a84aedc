#!/usr/bin/env python3
"""Soak test for `rap serve` (issue 20, point 5): a bounded run of mixed traffic against a
server on loopback, with SIGKILL and restart of the server, then checks.

Traffic (from --clients threads): concept adds (multipart), edits (PATCH info), deletes,
retrieves, chat completions (streamed; some abandoned mid-stream), and hostile bodies (a
1 x 100000 PNG, a 300 KB chat text, garbage multipart). Every --kill-every seconds the server
is SIGKILLed and started again on the same data dir.

At the end it checks that every acknowledged write is there (each concept whose add got 201
and that was not acknowledged as deleted exists, with the last acknowledged info), that the
server's RSS stayed under --max-rss-mb, and that no request hung (each has a --timeout).
Exit status 0 when all hold. Only the Python standard library is used.

    python3 tools/soak/soak.py --rap target/release/rap --minutes 10 \
        --models-dir ~/.local/share/rap/models --photos ../shared/datasets/dreambooth-dev
"""

import argparse
import http.client
import json
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib


def strip_png(w, h):
    """A valid grey PNG of w x h pixels: a few hundred bytes for 1 x 100000."""
    raw = b"".join(b"\x00" + b"\x78" * w for _ in range(h))
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def multipart(fields):
    boundary = "soak-%016x" % random.getrandbits(64)
    body = b""
    for name, value in fields:
        body += b"--" + boundary.encode() + b"\r\n"
        if name == "image":
            body += b'Content-Disposition: form-data; name="image"; filename="p.jpg"\r\n\r\n'
        else:
            body += ('Content-Disposition: form-data; name="%s"\r\n\r\n' % name).encode()
            value = value.encode()
        body += value + b"\r\n"
    body += b"--" + boundary.encode() + b"--\r\n"
    return "multipart/form-data; boundary=" + boundary, body


class Server:
    def __init__(self, args, data_dir):
        self.args, self.data_dir = args, data_dir
        self.proc, self.port, self.max_rss_kb = None, None, 0
        self.lock = threading.Lock()

    def start(self):
        env = dict(os.environ, RAP_DATA_DIR=self.data_dir)
        if self.args.models_dir:
            env["RAP_MODELS_DIR"] = self.args.models_dir
        self.proc = subprocess.Popen(
            [self.args.rap, "serve", "--addr", "127.0.0.1:0", "--json"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        self.port = int(json.loads(line)["listening"].rsplit(":", 1)[1])

    def kill_and_restart(self):
        with self.lock:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.start()

    def sample_rss(self):
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        self.max_rss_kb = max(self.max_rss_kb, int(line.split()[1]))
        except OSError:
            pass


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.hung = 0
        # concept name -> the states it may be in: an info string (present with that info) or
        # None (absent). An acknowledged write leaves one state; a write whose answer was lost
        # (the server was killed) adds its outcome to the possible ones.
        self.acked = {}

    def settle(self, name, state, acknowledged):
        with self.lock:
            if acknowledged:
                self.acked[name] = {state}
            elif name in self.acked:
                self.acked[name].add(state)

    def count(self, key):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1


def request(server, stats, method, path, body=None, ctype=None, timeout=60, stream_abandon=False):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        headers = {"content-type": ctype} if ctype else {}
        conn.request(method, path, body=body, headers=headers)
        res = conn.getresponse()
        if stream_abandon:
            res.read(64)  # a few bytes of the stream, then hang up
            conn.close()
            return res.status, None
        data = res.read()
        return res.status, data
    except TimeoutError:
        stats.count("hung")
        with stats.lock:
            stats.hung += 1
        return None, None
    except (ConnectionError, http.client.HTTPException, OSError):
        stats.count("connection lost (server killed)")
        time.sleep(0.2)  # the server is restarting: do not spin
        return None, None
    finally:
        conn.close()


def client(n, args, server, stats, photos, deadline):
    rnd = random.Random(args.seed * 1000 + n)
    mine = []
    while time.time() < deadline:
        op = rnd.choices(["add", "edit", "delete", "retrieve", "chat", "hostile"],
                         [3, 3, 1, 4, 2, 1])[0]
        if op == "add" or not mine and op in ("edit", "delete"):
            name = "c%d-%d" % (n, rnd.getrandbits(32))
            info = "info %d" % rnd.getrandbits(16)
            ctype, body = multipart([("name", name), ("info", info),
                                     ("image", rnd.choice(photos))])
            status, _ = request(server, stats, "POST", "/v1/concepts", body, ctype, args.timeout)
            stats.count("add %s" % status)
            if status == 201:
                stats.settle(name, info, True)
                mine.append(name)
        elif op == "edit":
            name = rnd.choice(mine)
            info = "edited %d" % rnd.getrandbits(16)
            status, _ = request(server, stats, "PATCH", "/v1/concepts/" + name,
                                json.dumps({"info": info}), "application/json", args.timeout)
            stats.count("edit %s" % status)
            if status == 200 or status is None:
                stats.settle(name, info, status == 200)
        elif op == "delete":
            name = mine.pop(rnd.randrange(len(mine)))
            status, _ = request(server, stats, "DELETE", "/v1/concepts/" + name,
                                timeout=args.timeout)
            stats.count("delete %s" % status)
            if status == 200 or status is None:
                stats.settle(name, None, status == 200)
        elif op == "retrieve":
            ctype, body = multipart([("image", rnd.choice(photos))])
            status, _ = request(server, stats, "POST", "/v1/retrieve", body, ctype, args.timeout)
            stats.count("retrieve %s" % status)
        elif op == "chat":
            abandon = rnd.random() < 0.5
            body = json.dumps({"model": "x", "stream": True, "max_tokens": 16,
                               "messages": [{"role": "user", "content": "Who is <c0>?"}]})
            status, _ = request(server, stats, "POST", "/v1/chat/completions", body,
                                "application/json", args.timeout, stream_abandon=abandon)
            stats.count("chat%s %s" % (" (abandoned)" if abandon else "", status))
        else:
            kind = rnd.choice(["strip", "text", "garbage"])
            if kind == "strip":
                ctype, body = multipart([("image", strip_png(1, 100000))])
                path = "/v1/retrieve"
            elif kind == "text":
                ctype = "application/json"
                body = json.dumps({"model": "x", "messages": [
                    {"role": "user", "content": "a" * 300000}]})
                path = "/v1/chat/completions"
            else:
                ctype, body = "multipart/form-data; boundary=zz", os.urandom(4096)
                path = "/v1/concepts"
            status, _ = request(server, stats, "POST", path, body, ctype, args.timeout)
            stats.count("hostile %s %s" % (kind, status))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rap", required=True, help="the rap binary")
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--kill-every", type=float, default=60, help="seconds between SIGKILLs")
    p.add_argument("--timeout", type=float, default=120, help="a request slower is 'hung'")
    p.add_argument("--max-rss-mb", type=float, default=2048)
    p.add_argument("--models-dir", help="RAP_MODELS_DIR for the server")
    p.add_argument("--photos", required=True, help="a folder of photo folders (dreambooth-dev)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()

    photos = []
    for root, _, files in os.walk(args.photos):
        for f in sorted(files):
            if f.lower().endswith((".jpg", ".jpeg", ".png")):
                with open(os.path.join(root, f), "rb") as fh:
                    photos.append(fh.read())
    if not photos:
        sys.exit("no photos under %s" % args.photos)

    data_dir = tempfile.mkdtemp(prefix="rap-soak-")
    server = Server(args, data_dir)
    server.start()
    stats = Stats()
    start = time.time()
    deadline = start + args.minutes * 60
    threads = [threading.Thread(target=client, args=(i, args, server, stats, photos, deadline))
               for i in range(args.clients)]
    for t in threads:
        t.start()
    kills, next_kill = 0, start + args.kill_every
    while time.time() < deadline:
        server.sample_rss()
        if time.time() >= next_kill:
            server.kill_and_restart()
            kills += 1
            next_kill += args.kill_every
        time.sleep(0.5)
    for t in threads:
        t.join(args.timeout + 10)

    # Every acknowledged write must be there.
    status, data = request(server, stats, "GET", "/v1/concepts", timeout=60)
    listed = ({c["name"]: c.get("info") for c in json.loads(data)["concepts"]}
              if status == 200 else {})
    if status != 200:
        print("listing failed: %s" % status)
    wrong = {n: {"possible": sorted(map(str, ok)), "found": listed.get(n)}
             for n, ok in stats.acked.items() if listed.get(n) not in ok}
    server.sample_rss()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(60)

    report = {
        "minutes": round((time.time() - start) / 60, 1), "clients": args.clients,
        "server_kills": kills, "requests": stats.counts,
        "acknowledged_concepts": len(stats.acked),
        "lost_or_wrong": dict(list(wrong.items())[:20]),
        "max_rss_mb": round(server.max_rss_kb / 1024, 1), "rss_bound_mb": args.max_rss_mb,
        "hung": stats.hung, "data_dir": data_dir,
    }
    print(json.dumps(report, indent=2, sort_keys=True))
    ok = (status == 200 and not wrong
          and stats.hung == 0 and server.max_rss_kb / 1024 <= args.max_rss_mb)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
