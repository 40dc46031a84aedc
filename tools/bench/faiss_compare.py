#!/usr/bin/env python3
"""rap's key index next to FAISS on the very same vectors, in one run.

1. Runs `rap bench vectors --dump DIR --json`: our exact scan and our HNSW graph (usearch) at
   several search breadths, on synthetic unit vectors that it also writes to DIR.
2. Loads those vectors and runs FAISS (faiss-cpu) on them: IndexFlatIP (exact) and
   IndexHNSWFlat with the same graph settings as ours (M = connectivity, efConstruction =
   expansion_add, inner product), at the
   same efSearch values. Like ours, searches go one query at a time on one thread, and the graph
   is built on every core.
3. Prints both, and our QPS / FAISS QPS at matched recall@10: each of our points against
   FAISS's recall/QPS curve interpolated at our recall (and exact against flat).

Needs numpy and faiss-cpu (`python3 -m venv V && V/bin/pip install numpy faiss-cpu`), and a
built rap, best with usearch's SIMD kernels since FAISS has its own (`cargo build -p rap
--features simd`). Example:

    V/bin/python tools/bench/faiss_compare.py --rap target/debug/rap --sizes 10000,100000
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

K = 10


def load(path, dim):
    import numpy as np

    return np.fromfile(path, dtype="<f4").reshape(-1, dim)


def one_by_one(index, queries):
    """Searches one query at a time; returns (QPS, p99 ms, ids)."""
    import numpy as np

    ms, ids = [], []
    start = time.perf_counter()
    for q in queries:
        t = time.perf_counter()
        _, found = index.search(q.reshape(1, -1), K)
        ms.append((time.perf_counter() - t) * 1000.0)
        ids.append(found[0])
    qps = len(queries) / (time.perf_counter() - start)
    return qps, float(np.percentile(ms, 99, method="nearest")), ids


def recall(got, truth):
    hits = sum(len(set(g.tolist()) & set(t.tolist())) for g, t in zip(got, truth))
    return hits / (K * len(truth))


def qps_at(curve, r):
    """FAISS QPS at recall r, interpolated on its (recall, qps) points; None outside them."""
    pts = sorted(curve)
    for (r0, q0), (r1, q1) in zip(pts, pts[1:]):
        if r0 <= r <= r1:
            if r1 == r0:
                return max(q0, q1)
            return q0 + (q1 - q0) * (r - r0) / (r1 - r0)
    if pts and abs(pts[-1][0] - r) < 1e-9:
        return pts[-1][1]
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rap", default="target/debug/rap", help="the rap binary")
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--ef", default="16,32,64,128,256")
    ap.add_argument("--data", default="clustered", choices=["clustered", "uniform"],
                    help="the keys (see `rap bench vectors --help`)")
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--json-out", help="also write everything measured here as JSON")
    args = ap.parse_args()

    import faiss
    import numpy as np

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [args.rap, "bench", "vectors", "--sizes", args.sizes, "--dim", str(args.dim),
               "--queries", str(args.queries), "--ef", args.ef, "--data", args.data,
               "--clusters", str(args.clusters), "--dump", tmp, "--json"]
        print("running:", " ".join(cmd), file=sys.stderr)
        ours = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        efs = [int(e) for e in args.ef.split(",")]
        results = []
        for size in ours["sizes"]:
            n = size["keys"]
            keys = load(os.path.join(tmp, f"keys-{n}.f32"), args.dim)
            queries = load(os.path.join(tmp, f"queries-{n}.f32"), args.dim)
            assert keys.shape == (n, args.dim), keys.shape

            faiss.omp_set_num_threads(cores)
            t = time.perf_counter()
            flat = faiss.IndexFlatIP(args.dim)
            flat.add(keys)
            flat_build = time.perf_counter() - t
            faiss.omp_set_num_threads(1)
            flat_qps, flat_p99, truth = one_by_one(flat, queries)
            flat_bytes = len(faiss.serialize_index(flat))
            del flat

            faiss.omp_set_num_threads(cores)
            t = time.perf_counter()
            ours_hnsw = size["hnsw"]
            hnsw = faiss.IndexHNSWFlat(args.dim, ours_hnsw["connectivity"], faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = ours_hnsw["expansion_add"]
            hnsw.add(keys)
            hnsw_build = time.perf_counter() - t
            hnsw_bytes = len(faiss.serialize_index(hnsw))
            faiss.omp_set_num_threads(1)
            sweep = []
            for ef in efs:
                hnsw.hnsw.efSearch = ef
                qps, p99, got = one_by_one(hnsw, queries)
                sweep.append({"ef": ef, "qps": qps, "p99_ms": p99, "recall_at_10": recall(got, truth)})
            del hnsw

            curve = [(s["recall_at_10"], s["qps"]) for s in sweep]
            matched = []
            for s in size["hnsw"]["search"]:
                fq = qps_at(curve, s["recall_at_10"])
                matched.append({
                    "ef": s["ef"], "recall_at_10": s["recall_at_10"], "rap_qps": s["qps"],
                    "faiss_qps_at_that_recall": fq,
                    "ratio": (s["qps"] / fq) if fq else None,
                })
            results.append({
                "keys": n,
                "faiss_flat": {"build_s": flat_build, "qps": flat_qps, "p99_ms": flat_p99,
                               "serialized_bytes": flat_bytes},
                "faiss_hnsw": {"build_s": hnsw_build, "build_threads": cores,
                               "serialized_bytes": hnsw_bytes, "search": sweep},
                "rap": size,
                "exact_ratio": size["exact"]["qps"] / flat_qps,
                "hnsw_matched": matched,
            })

    print(f"dim {args.dim}, k {K}, {args.queries} queries one at a time on 1 thread; "
          f"builds on {cores} cores; faiss {faiss.__version__}")
    print(f"data: {ours['data']}; rap's graph kernels: {ours['sizes'][0]['hnsw']['kernels']}")
    for r in results:
        n = r["keys"]
        print(f"\n== {n} keys ==")
        print(f"build: rap HNSW {r['rap']['hnsw']['build_s']:.1f} s, FAISS HNSW "
              f"{r['faiss_hnsw']['build_s']:.1f} s")
        print(f"exact: rap {r['rap']['exact']['qps']:.1f} QPS (p99 {r['rap']['exact']['p99_ms']:.2f} ms), "
              f"FAISS flat {r['faiss_flat']['qps']:.1f} QPS (p99 {r['faiss_flat']['p99_ms']:.2f} ms): "
              f"rap/FAISS = {r['exact_ratio']:.2f}")
        print(f"{'ef':>5} {'rap recall':>10} {'rap QPS':>9} | {'FAISS recall':>12} {'FAISS QPS':>9} | "
              f"{'FAISS QPS @ rap recall':>22} {'rap/FAISS':>9}")
        for m, f in zip(r["hnsw_matched"], r["faiss_hnsw"]["search"]):
            fq = m["faiss_qps_at_that_recall"]
            fq_text = "%.1f" % fq if fq else "outside range"
            ratio_text = "%.2f" % m["ratio"] if m["ratio"] else "-"
            print(f"{m['ef']:>5} {m['recall_at_10']:>10.3f} {m['rap_qps']:>9.1f} | "
                  f"{f['recall_at_10']:>12.3f} {f['qps']:>9.1f} | "
                  f"{fq_text:>22} {ratio_text:>9}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"faiss_version": faiss.__version__, "cores": cores, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
