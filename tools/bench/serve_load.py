#!/usr/bin/env python3
"""Load benchmark for `rap serve`: N concurrent clients for S seconds against /v1/retrieve and
/v1/chat/completions (each in turn), reporting throughput, p50/p99 latency and errors.

Standard library only. Start the server first (with the default models installed), e.g.

    rap serve --addr 127.0.0.1:8080 &
    python3 tools/bench/serve_load.py --url http://127.0.0.1:8080 \
        --photo ../shared/datasets/dreambooth-dev/dog/00.jpg \
        --query ../shared/datasets/dreambooth-dev/dog/03.jpg

A 503 answer (the worker pool is full; it carries Retry-After) is the server refusing work
on purpose and is counted apart from errors; anything else that is not 2xx is an error.
Only loopback URLs are accepted: this is a benchmark of a local server.
"""
import argparse
import base64
import http.client
import json
import os
import sys
import threading
import time
import uuid
from urllib.parse import urlsplit


def multipart(fields, files):
    boundary = "rapbench" + uuid.uuid4().hex
    out = bytearray()
    for name, value in fields:
        out += f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n".encode()
    for name, filename, data in files:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", bytes(out)


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def run(endpoint, args, host, port, headers_base, query_bytes):
    if endpoint == "retrieve":
        ctype, body = multipart([("top_k", "2")], [("image", "query.jpg", query_bytes)])
        path = "/v1/retrieve"
    else:
        url = "data:image/jpeg;base64," + base64.b64encode(query_bytes).decode()
        body = json.dumps({
            "model": "rap", "max_tokens": args.max_tokens, "temperature": 0,
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Who is in this photo?"},
                {"type": "image_url", "image_url": {"url": url}}]}],
        }).encode()
        ctype = "application/json"
        path = "/v1/chat/completions"
    headers = dict(headers_base, **{"Content-Type": ctype})
    deadline = time.monotonic() + args.seconds
    results = []  # (status, seconds)
    lock = threading.Lock()

    def client():
        conn = http.client.HTTPConnection(host, port, timeout=args.timeout)
        local = []
        while time.monotonic() < deadline:
            start = time.monotonic()
            try:
                conn.request("POST", path, body=body, headers=headers)
                res = conn.getresponse()
                res.read()
                status = res.status
                if status == 503:
                    # Honour Retry-After a little, as a polite client would (bounded by the deadline).
                    time.sleep(min(float(res.getheader("Retry-After") or 1) * 0.1, max(0.0, deadline - time.monotonic())))
            except Exception as e:  # connection errors count as errors
                status = f"exception: {type(e).__name__}"
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=args.timeout)
            local.append((status, time.monotonic() - start))
        conn.close()
        with lock:
            results.extend(local)

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    ok = sorted(s for st, s in results if isinstance(st, int) and 200 <= st < 300)
    busy = sum(1 for st, _ in results if st == 503)
    errors = {}
    for st, _ in results:
        if not (isinstance(st, int) and (200 <= st < 300 or st == 503)):
            errors[str(st)] = errors.get(str(st), 0) + 1
    ms = lambda v: None if v is None else round(v * 1000, 1)
    return {
        "endpoint": path, "clients": args.clients, "seconds": round(elapsed, 1),
        "requests": len(results), "ok": len(ok), "busy_503": busy, "errors": errors,
        "ok_per_s": round(len(ok) / elapsed, 2), "answered_per_s": round((len(ok) + busy) / elapsed, 2),
        "ok_p50_ms": ms(percentile(ok, 50)), "ok_p99_ms": ms(percentile(ok, 99)),
        "all_p50_ms": ms(percentile(sorted(s for _, s in results), 50)),
        "all_p99_ms": ms(percentile(sorted(s for _, s in results), 99)),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--key", default=os.environ.get("RAP_API_KEY", ""))
    p.add_argument("--photo", required=True, help="reference photo of the concept to add")
    p.add_argument("--query", required=True, help="another photo of it, sent by every request")
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--endpoints", default="retrieve,chat")
    args = p.parse_args()
    u = urlsplit(args.url)
    if u.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("only loopback URLs: this benchmarks a local server")
    host, port = u.hostname, u.port or 80
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}

    # The concept the requests should find.
    conn = http.client.HTTPConnection(host, port, timeout=120)
    ctype, body = multipart([("name", "bench-subject"), ("info", "<bench-subject> is the benchmark's subject.")],
                            [("image", os.path.basename(args.photo), open(args.photo, "rb").read())])
    conn.request("POST", "/v1/concepts", body=body, headers=dict(headers, **{"Content-Type": ctype}))
    res = conn.getresponse()
    text = res.read()
    if res.status not in (201, 409):
        sys.exit(f"could not add the benchmark concept: {res.status} {text[:300]!r}")

    query = open(args.query, "rb").read()
    report = []
    for endpoint in args.endpoints.split(","):
        r = run(endpoint.strip(), args, host, port, headers, query)
        print(json.dumps(r), flush=True)
        report.append(r)
    conn.request("DELETE", "/v1/concepts/bench-subject", headers=headers)
    conn.getresponse().read()
    if any(r["errors"] for r in report):
        sys.exit("errors other than deliberate 503s")


if __name__ == "__main__":
    main()
