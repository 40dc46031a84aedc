"""Which descriptor of EfficientNet-Lite0 tells look-alike instances apart (issue 18, point 2).

Same weights, same windows as the product, different ways of turning feature maps into
evidence. On a folder-per-subject set (dreambooth-dev: `dog`, `dog2`, `dog3` and `cat` are
look-alikes of each other) the first photo of each subject (by file name) is its reference,
every other photo a query. A query is cut into the regions retrieval embeds (whole image plus
square windows of 0.5 and 0.75 of the shorter side overlapping by half, as
rap_engine::retrieve::proposals does) and a concept's score is its best region's cosine to
the concept's best key. Each descriptor is scored by:

- top-1: the true subject scores highest;
- weighted: recognition accuracy (mean of positive and negative accuracy, as `rap eval
  retrieval` counts it) at the best single threshold, over all queries and all subjects;
- look-alike weighted: the same restricted to the look-alike queries and concepts;
- look-alike margin: for a query of a look-alike subject, the true subject's score minus the
  best other look-alike's (mean, and the share above 0);
- AUC of the true scores against the look-alike scores of look-alike queries;
- cost: the network passes per region and the pooling/matching time per region (busy-machine
  milliseconds; the network pass itself is about 20-25 ms per region on 2 cores).

Descriptors: average pooling (today), GeM (p = 2, 3, 4), R-MAC-style regional max pooling,
multi-layer (pooled earlier stage maps concatenated, each part L2-normalised), horizontal-flip
test-time augmentation (query, reference or both, averaged into one vector), reference
augmentation (flip and crop copies of the reference as extra keys, a concept scores its best
key), and re-ranking by local-feature matching: mutual nearest neighbours between the spatial
features of the query's best region and the reference, counted when their offsets agree
(a translation check), added to the global score with a weight.

The network is the golden script's PyTorch Lite0 (tools/golden/efficientnet_lite0_golden.py),
preprocessing as the product's (bilinear shorter edge to 224, centre crop, (x/255-0.5)/0.5);
Pillow's resize is not bit-identical to the Rust one, which moves scores in the third decimal.

    python tools/study/evidence.py WEIGHTS.pth DATASET_DIR [--out table.md]

Needs torch, numpy, pillow (e.g. the venv of tools/bench/encoder_vs_torch.py).
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden"))
from efficientnet_lite0_golden import EfficientNetLite0  # noqa: E402

SIZE = 224
LOOKALIKES = ["dog", "dog2", "dog3", "cat"]
SCALES = [0.5, 0.75]
# Block indices whose outputs are the stage ends used by the multi-layer descriptors.
STAGE_ENDS = {"s5_112": 10, "s6_192": 14, "s7_320": 15}


def proposals(w, h, scales=SCALES):
    """rap_engine::retrieve::proposals: the whole image, then square windows per scale."""
    out = [(0.0, 0.0, float(w), float(h))]
    short = min(w, h)
    for scale in scales:
        side = round(short * scale)
        if side < 32 or scale >= 1.0:
            continue
        stride = side / 2.0

        def starts(length):
            n = max(int(np.ceil((length - side) / stride)), 0) + 1
            return [0.0] if n == 1 else [(length - side) * i / (n - 1) for i in range(n)]

        for y in starts(h):
            for x in starts(w):
                out.append((x, y, x + side, y + side))
    return out


def crop(im, box):
    x0, y0, x1, y1 = box
    return im.crop((int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1))))


def preprocess(im):
    w, h = im.size
    s = SIZE / min(w, h)
    im = im.resize((max(SIZE, round(w * s)), max(SIZE, round(h * s))), Image.BILINEAR)
    w, h = im.size
    left, top = (w - SIZE) // 2, (h - SIZE) // 2
    px = np.asarray(im.crop((left, top, left + SIZE, top + SIZE)), dtype=np.float32)
    return (px.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5


class Net(EfficientNetLite0):
    def maps(self, x):
        """The last feature map (N, 1280, 7, 7) and the chosen stage ends."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        stages = {}
        for i, b in enumerate(self._blocks):
            x = b(x)
            for name, idx in STAGE_ENDS.items():
                if i == idx:
                    stages[name] = x
        return F.relu6(self._bn1(self._conv_head(x))), stages


def l2n(x, dim=-1):
    return x / x.norm(dim=dim, keepdim=True).clamp(min=1e-12)


def gem(fmap, p):
    return fmap.clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


def rmac(fmap, levels=3):
    """Regional max pooling (Tolias et al.): square regions at `levels` scales, each max-pooled
    and L2-normalised, summed (no PCA-whitening: nothing to learn it on)."""
    n, c, h, w = fmap.shape
    acc = torch.zeros(n, c)
    for lvl in range(1, levels + 1):
        side = max(1, int(round(2 * min(h, w) / (lvl + 1))))
        side = min(side, h, w)
        ys = np.unique(np.linspace(0, h - side, lvl).round().astype(int)) if lvl > 1 else [0]
        xs = np.unique(np.linspace(0, w - side, lvl).round().astype(int)) if lvl > 1 else [0]
        if lvl == 1:
            acc += l2n(fmap.amax(dim=(2, 3)))
            continue
        for y in ys:
            for x in xs:
                acc += l2n(fmap[:, :, y:y + side, x:x + side].amax(dim=(2, 3)))
    return acc


DESCRIPTORS = {
    "avg": lambda f, s: f.mean(dim=(2, 3)),
    "gem2": lambda f, s: gem(f, 2.0),
    "gem3": lambda f, s: gem(f, 3.0),
    "gem4": lambda f, s: gem(f, 4.0),
    "max": lambda f, s: f.amax(dim=(2, 3)),
    "rmac": lambda f, s: rmac(f),
    "avg+s7": lambda f, s: torch.cat([l2n(f.mean(dim=(2, 3))),
                                      l2n(s["s7_320"].mean(dim=(2, 3)))], 1),
    "avg+s6+s5": lambda f, s: torch.cat([l2n(f.mean(dim=(2, 3))),
                                         l2n(s["s6_192"].mean(dim=(2, 3))),
                                         l2n(s["s5_112"].mean(dim=(2, 3)))], 1),
    "gem3+s6+s5": lambda f, s: torch.cat([l2n(gem(f, 3.0)),
                                          l2n(gem(s["s6_192"].relu(), 3.0)),
                                          l2n(gem(s["s5_112"].relu(), 3.0))], 1),
}


def run_net(model, images, batch=16):
    """Descriptors (dict name -> (N, D) normalised), local maps (N, 49, 1280) and
    (N, 196, 112), and the pooling time per image in ms."""
    desc = {k: [] for k in DESCRIPTORS}
    local7, local14 = [], []
    pool_ms = {k: 0.0 for k in DESCRIPTORS}
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.stack([preprocess(im) for im in images[i:i + batch]]))
        f, s = model.maps(x)
        for k, fn in DESCRIPTORS.items():
            t = time.perf_counter()
            desc[k].append(l2n(fn(f, s)))
            pool_ms[k] += (time.perf_counter() - t) * 1000
        local7.append(l2n(f.flatten(2).transpose(1, 2)).half())
        local14.append(l2n(s["s5_112"].flatten(2).transpose(1, 2)).half())
    n = max(len(images), 1)
    return ({k: torch.cat(v) for k, v in desc.items()}, torch.cat(local7), torch.cat(local14),
            {k: v / n for k, v in pool_ms.items()})


def local_score(q, r, side):
    """Mutual nearest neighbours between two (side*side, C) normalised local feature sets,
    counted when their offset agrees (within one cell) with the most common offset, as a share
    of the cells."""
    sim = q.float() @ r.float().T
    qn = sim.argmax(1)
    rn = sim.argmax(0)
    idx = torch.arange(sim.shape[0])
    mutual = rn[qn] == idx
    if not mutual.any():
        return 0.0
    qi = idx[mutual]
    ri = qn[mutual]
    dy = (ri // side - qi // side).numpy() + side - 1
    dx = (ri % side - qi % side).numpy() + side - 1
    hist = np.zeros((2 * side + 1, 2 * side + 1))
    np.add.at(hist, (dy + 1, dx + 1), 1)
    # Pairs within one cell of each offset: a 3x3 box sum of the offset histogram.
    box = sum(hist[1 + a:2 * side + a, 1 + b:2 * side + b] for a in (-1, 0, 1) for b in (-1, 0, 1))
    best = int(box.max())
    return best / sim.shape[0]


def auc(pos, neg):
    pos, neg = np.asarray(pos), np.asarray(neg)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    gt = (pos[:, None] > neg[None, :]).mean()
    eq = (pos[:, None] == neg[None, :]).mean()
    return float(gt + eq / 2)


def best_weighted(pos, neg):
    """Best (pos accuracy + neg accuracy)/2 over thresholds between observed scores."""
    pos, neg = np.sort(pos), np.sort(neg)
    cands = np.unique(np.concatenate([pos, neg]))
    cuts = np.concatenate([[cands[0] - 1], (cands[:-1] + cands[1:]) / 2, [cands[-1] + 1]])
    best = (0.0, 0.0)
    for t in cuts:
        w = ((pos >= t).mean() + (neg < t).mean()) / 2
        if w > best[0]:
            best = (w, t)
    return best


def evaluate(scores, subjects, query_subject):
    """scores: (Q, S) array of concept scores."""
    s_idx = {s: i for i, s in enumerate(subjects)}
    truth = np.array([s_idx[q] for q in query_subject])
    top1 = float((scores.argmax(1) == truth).mean())
    pos = scores[np.arange(len(truth)), truth]
    mask = np.ones_like(scores, dtype=bool)
    mask[np.arange(len(truth)), truth] = False
    neg = scores[mask]
    weighted, thr = best_weighted(pos, neg)
    la = [s_idx[s] for s in LOOKALIKES if s in s_idx]
    margins, la_pos, la_neg = [], [], []
    for qi, t in enumerate(truth):
        if t not in la:
            continue
        others = [c for c in la if c != t]
        margins.append(scores[qi, t] - scores[qi, others].max())
        la_pos.append(scores[qi, t])
        la_neg.extend(scores[qi, others])
    la_w, _ = best_weighted(np.array(la_pos), np.array(la_neg))
    # Scores of different descriptors live on different scales: the margin is also given in
    # units of the standard deviation of all wrong-subject scores.
    return dict(top1=top1, weighted=weighted, thr=thr, la_weighted=la_w,
                margin=float(np.mean(margins)), margin_z=float(np.mean(margins) / neg.std()), margin_pos=float(np.mean(np.array(margins) > 0)),
                auc=auc(la_pos, la_neg))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("weights")
    ap.add_argument("dataset")
    ap.add_argument("--out", help="write the table (markdown) here too")
    ap.add_argument("--ref-index", type=int, default=0,
                    help="which photo (by file name) is the reference: a check that a finding "
                         "is not about one choice of references")
    ap.add_argument("--quick", action="store_true",
                    help="only the pooling and reference-key rows (no flipped queries, no "
                         "local matching): half the network passes")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    model = Net().eval()
    model.load_state_dict(torch.load(args.weights, map_location="cpu"), strict=True)

    subjects = sorted(d for d in os.listdir(args.dataset)
                      if os.path.isdir(os.path.join(args.dataset, d)))
    refs, queries = [], []
    for s in subjects:
        files = sorted(f for f in os.listdir(os.path.join(args.dataset, s))
                       if f.lower().endswith((".jpg", ".jpeg", ".png", ".webp")))
        load = lambda f: ImageOps.exif_transpose(  # noqa: E731
            Image.open(os.path.join(args.dataset, s, f))).convert("RGB")
        ri = args.ref_index % len(files)
        refs.append(load(files[ri]))
        queries += [(s, load(f)) for i, f in enumerate(files) if i != ri]
    print(f"{len(subjects)} subjects, {len(queries)} queries", file=sys.stderr)

    t0 = time.perf_counter()
    # References: the photo, its mirror, crop copies (centre and the four corners at 0.8 of
    # each side, centre at 0.6) and the mirror of the 0.8 centre crop. Indices into VARIANTS.
    def ref_variants(im):
        w, h = im.size
        out = [im, ImageOps.mirror(im)]
        for s, spots in [(0.8, [(0.5, 0.5), (0, 0), (1, 0), (0, 1), (1, 1)]), (0.6, [(0.5, 0.5)])]:
            cw, ch = w * s, h * s
            for fx, fy in spots:
                x, y = (w - cw) * fx, (h - ch) * fy
                out.append(crop(im, (x, y, x + cw, y + ch)))
        out.append(ImageOps.mirror(out[2]))
        return out

    ref_imgs = [v for im in refs for v in ref_variants(im)]
    nvar = len(ref_imgs) // len(refs)
    ref_desc, ref_l7, ref_l14, _ = run_net(model, ref_imgs)

    # Query regions, and their mirrors.
    q_regions, q_owner = [], []
    for qi, (_, im) in enumerate(queries):
        for box in proposals(*im.size):
            q_regions.append(crop(im, box))
            q_owner.append(qi)
    q_owner = np.array(q_owner)
    t1 = time.perf_counter()
    q_desc, q_l7, q_l14, pool_ms = run_net(model, q_regions)
    net_ms = (time.perf_counter() - t1) * 1000 / len(q_regions)
    q_desc_flip = None if args.quick else run_net(
        model, [ImageOps.mirror(r) for r in q_regions])[0]
    print(f"network {net_ms:.1f} ms/region incl. pooling (busy machine); "
          f"{len(q_regions)} regions, {time.perf_counter() - t0:.0f} s so far", file=sys.stderr)

    S, Q = len(subjects), len(queries)
    query_subject = [s for s, _ in queries]

    def concept_scores(qd, keys_per_concept):
        """(Q, S) scores: best region x best key. qd: (R, D); keys_per_concept: list of (K, D)."""
        out = np.full((Q, S), -2.0)
        best_region = np.zeros((Q, S), dtype=int)
        for c, keys in enumerate(keys_per_concept):
            sim = (qd @ keys.T).amax(1).numpy()  # (R,)
            for qi in range(Q):
                rs = np.nonzero(q_owner == qi)[0]
                j = rs[sim[rs].argmax()]
                out[qi, c] = sim[j]
                best_region[qi, c] = j
        return out, best_region

    rows = []

    def keys(name, which, flip_avg=False):
        d = ref_desc[name].view(S, nvar, -1)
        if flip_avg:
            return [l2n(d[c, 0] + d[c, 1])[None] for c in range(S)]
        return [d[c, which] for c in range(S)]

    def add(label, scores, passes, extra_ms, note=""):
        m = evaluate(scores, subjects, query_subject)
        rows.append((label, m, passes, extra_ms, note))
        print(label, {k: round(v, 3) for k, v in m.items()}, file=sys.stderr)

    base_best_region = {}
    for name in DESCRIPTORS if not args.quick else ["avg", "gem3"]:
        sc, br = concept_scores(q_desc[name], keys(name, [0]))
        base_best_region[name] = (sc, br)
        add(name, sc, 1, pool_ms[name])
    # Flip TTA and reference augmentation, on the two leading single-vector poolings.
    for name in ["avg", "gem3"]:
        if args.quick:
            for label, which in [("ref+centre0.8", [0, 2]), ("ref+centre0.8+0.6", [0, 2, 7]),
                                 ("ref+5 crops0.8", [0, 2, 3, 4, 5, 6])]:
                add(f"{name} keys {label}", concept_scores(q_desc[name], keys(name, which))[0],
                    1, pool_ms[name], f"{len(which)} keys per ref")
            continue
        qflip = l2n(q_desc[name] + q_desc_flip[name])
        add(f"{name} flip-query", concept_scores(qflip, keys(name, [0]))[0], 2, pool_ms[name])
        add(f"{name} flip-ref", concept_scores(q_desc[name], keys(name, None, True))[0], 1,
            pool_ms[name], "ref = mean(ref, mirror)")
        add(f"{name} flip-both", concept_scores(qflip, keys(name, None, True))[0], 2,
            pool_ms[name])
        add(f"{name} ref+mirror keys", concept_scores(q_desc[name], keys(name, [0, 1]))[0], 1,
            pool_ms[name], "2 keys per ref")
        for label, which in [("ref+centre0.8", [0, 2]), ("ref+centre0.8+0.6", [0, 2, 7]),
                             ("ref+5 crops0.8", [0, 2, 3, 4, 5, 6]),
                             ("ref+mirror+5 crops0.8", [0, 1, 2, 3, 4, 5, 6]),
                             ("all 9 variants", list(range(nvar)))]:
            add(f"{name} keys {label}", concept_scores(q_desc[name], keys(name, which))[0], 1,
                pool_ms[name], f"{len(which)} keys per ref")
        add(f"{name} keys ref+mirror+5 crops0.8, flip-query",
            concept_scores(l2n(q_desc[name] + q_desc_flip[name]),
                           keys(name, [0, 1, 2, 3, 4, 5, 6]))[0], 2, pool_ms[name],
            "7 keys per ref")
    for name in [] if args.quick else ["rmac", "gem3+s6+s5"]:
        add(f"{name} keys ref+5 crops0.8", concept_scores(q_desc[name], keys(name, [0, 2, 3, 4, 5, 6]))[0],
            1, pool_ms[name], "6 keys per ref")

    # Local-feature re-ranking: on the best region (by the global descriptor) of each concept.
    for name in [] if args.quick else ["avg", "gem3"]:
        sc, br = base_best_region[name]
        for lname, ql, rl, side in [("7x7 last", q_l7, ref_l7, 7), ("14x14 s5", q_l14, ref_l14, 14)]:
            t = time.perf_counter()
            loc = np.zeros((Q, S))
            for qi in range(Q):
                for c in range(S):
                    loc[qi, c] = local_score(ql[br[qi, c]], rl[c * nvar], side)
            ms = (time.perf_counter() - t) * 1000 / (Q * S)
            for w in [0.25, 0.5, 1.0]:
                add(f"{name} + {w} x MNN {lname}", sc + w * loc, 1, pool_ms[name] + ms,
                    f"{ms:.2f} ms per (region, concept) pair")

    lines = [
        f"dreambooth-dev, refs 1 (photo {args.ref_index} by file name), {Q} queries x {S} subjects, windows "
        f"whole + {SCALES}; look-alikes {LOOKALIKES} "
        f"({sum(q in LOOKALIKES for q in query_subject)} of the queries). Network pass {net_ms:.1f} ms/region "
        "(busy 2-core machine, PyTorch).",
        "",
        "| descriptor | top-1 | weighted (best thr) | thr | look-alike weighted | look-alike margin mean | "
        "margin / sd(neg) | margin > 0 | look-alike AUC | net passes/region | pooling ms/region | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, m, passes, extra, note in rows:
        lines.append(f"| {label} | {m['top1']:.3f} | {m['weighted']:.3f} | {m['thr']:.3f} | "
                     f"{m['la_weighted']:.3f} | {m['margin']:+.3f} | {m['margin_z']:.2f} | "
                     f"{m['margin_pos']:.2f} | "
                     f"{m['auc']:.3f} | {passes} | {extra:.2f} | {note} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
