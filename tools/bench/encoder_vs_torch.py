"""EfficientNet-Lite0 on the CPU: rap against PyTorch eager and ONNX Runtime, side by side.

The same work as `rap models bench efficientnet-lite0`: a synthetic 640x480 RGB photo (the
very pixels the Rust bench makes), resized (bilinear, shorter edge to 224) and centre-cropped
to 224, normalised to [-1, 1], run through the network to the 1280-d feature map and
average-pooled; preprocessing is inside the timed loop for all three. Same weights: the
installed checkpoint (`efficientnet-lite0-57934424.pth`, EfficientNet-PyTorch names) is loaded
into the PyTorch Lite0 module of tools/golden/efficientnet_lite0_golden.py,
which is also exported to ONNX for ONNX Runtime. Every engine gets 2 threads (PyTorch's
intra-op threads, ONNX Runtime's intra-op threads, RAYON_NUM_THREADS for rap). Each batch size
is timed like rap times it: one warm-up run, then runs until `--seconds` have passed (at
least two).

It prints images/s of each engine at batch 1 and 8 and rap's over theirs, with the load
average before and after: on a busy machine (load over the core count) the figures are noise.

Needs torch, onnx, onnxruntime, numpy and pillow. Without them, `--setup` makes a virtual
environment (default /tmp/rap-encoder-bench-venv) with pip and reruns itself there. PyPI's
torch wheel for Linux brings its CUDA libraries along (several GB); a CPU-only torch build
does as well here if your pip is set up to find one.

    cargo build --release -p rap
    python3 tools/bench/encoder_vs_torch.py --setup \
        [--models-dir DIR] [--rap target/release/rap] [--seconds 3]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

THREADS = 2
SIZE = 224
VENV = "/tmp/rap-encoder-bench-venv"
PACKAGES = ["numpy", "pillow", "torch", "onnx", "onnxruntime"]


def ensure_packages(args):
    try:
        import numpy, onnx, onnxruntime, PIL, torch  # noqa: F401
        return
    except ImportError as e:
        if not args.setup or os.environ.get("RAP_BENCH_IN_VENV"):
            sys.exit(f"missing {e.name}: pip install {' '.join(PACKAGES)} (or pass --setup)")
    venv = args.venv
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", venv])
    subprocess.check_call([py, "-m", "pip", "install", "-q", *PACKAGES])
    env = dict(os.environ, RAP_BENCH_IN_VENV="1")
    os.execve(py, [py, os.path.abspath(__file__), *sys.argv[1:]], env)


def lite0_module():
    """EfficientNet-Lite0 in PyTorch with the EfficientNet-PyTorch parameter names: the golden
    script's module (tools/golden/efficientnet_lite0_golden.py), its forward giving the
    average-pooled 1280-d features (the embedding before normalisation)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden"))
    from efficientnet_lite0_golden import EfficientNetLite0

    class Pooled(EfficientNetLite0):
        def forward(self, x):
            return self.features(x).mean(dim=(2, 3))

    return Pooled()


def photo():
    """The 640x480 image of `rap models bench`."""
    import numpy as np
    from PIL import Image

    x = np.arange(640, dtype=np.int64)[None, :]
    y = np.arange(480, dtype=np.int64)[:, None]
    px = np.stack(np.broadcast_arrays(x % 251, y % 241, (x * y) % 239), axis=-1)
    return Image.fromarray(px.astype(np.uint8), "RGB")


def preprocess(images):
    """Shorter edge to 224 (bilinear), centre crop, (x / 255 - 0.5) / 0.5, NCHW float32."""
    import numpy as np
    from PIL import Image

    out = np.empty((len(images), 3, SIZE, SIZE), dtype=np.float32)
    for i, im in enumerate(images):
        w, h = im.size
        s = SIZE / min(w, h)
        im = im.resize((max(SIZE, int(w * s)), max(SIZE, int(h * s))), Image.BILINEAR)
        w, h = im.size
        left, top = (w - SIZE) // 2, (h - SIZE) // 2
        px = np.asarray(im.crop((left, top, left + SIZE, top + SIZE)), dtype=np.float32)
        out[i] = (px.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
    return out


def images_per_s(run, batch, seconds):
    images = [photo()] * batch
    run(images)  # warm-up
    start, runs = time.perf_counter(), 0
    while runs < 2 or time.perf_counter() - start < seconds:
        run(images)
        runs += 1
    return runs * batch / (time.perf_counter() - start)


def load_average():
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models-dir", default=os.environ.get("RAP_MODELS_DIR"),
                    help="the rap models directory holding efficientnet-lite0 "
                         "[$RAP_MODELS_DIR, else rap's default]")
    ap.add_argument("--weights", help="the .pth itself [MODELS_DIR/efficientnet-lite0/...]")
    ap.add_argument("--rap", default="target/release/rap", help="the rap binary")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--setup", action="store_true", help="make a venv with the packages")
    ap.add_argument("--venv", default=VENV)
    args = ap.parse_args()
    ensure_packages(args)

    import numpy as np
    import onnxruntime as ort
    import torch

    env = dict(os.environ, RAYON_NUM_THREADS=str(THREADS))
    if args.models_dir:
        env["RAP_MODELS_DIR"] = args.models_dir
    weights = args.weights
    if weights is None:
        if not args.models_dir:
            sys.exit("say where the weights are: --models-dir, $RAP_MODELS_DIR or --weights")
        weights = os.path.join(args.models_dir, "efficientnet-lite0",
                               "efficientnet-lite0-57934424.pth")

    print(f"load average before: {load_average()}  ({os.cpu_count()} cores)")
    torch.set_grad_enabled(False)
    torch.set_num_threads(THREADS)
    model = lite0_module().eval()
    try:
        sd = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception:  # legacy pickles some torch versions refuse in weights-only mode
        sd = torch.load(weights, map_location="cpu", weights_only=False)
    model.load_state_dict(sd, strict=True)

    # One engine at a time: the idle threads of one (OpenMP's, ONNX Runtime's) spin for a
    # while after each run and would steal the cores from the next.
    def torch_run(images):
        return model(torch.from_numpy(preprocess(images))).numpy()

    results = {"pytorch": {}, "onnxruntime": {}}
    for batch in (1, 8):
        results["pytorch"][batch] = images_per_s(torch_run, batch, args.seconds)

    onnx_path = os.path.join(tempfile.mkdtemp(prefix="rap-lite0-"), "lite0.onnx")
    example = torch.from_numpy(preprocess([photo()]))
    export = dict(input_names=["x"], output_names=["features"],
                  dynamic_axes={"x": {0: "n"}, "features": {0: "n"}}, opset_version=17)
    try:
        torch.onnx.export(model, (example,), onnx_path, dynamo=False, **export)
    except TypeError:  # a torch without the `dynamo` switch
        torch.onnx.export(model, (example,), onnx_path, **export)
    ref = model(example).numpy()
    time.sleep(1)
    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": example.numpy()})[0]
    diff = float(np.abs(ref - got).max())
    if diff > 1e-3:
        sys.exit(f"ONNX Runtime's features differ from PyTorch's by {diff}")

    def ort_run(images):
        return sess.run(None, {"x": preprocess(images)})[0]

    for batch in (1, 8):
        results["onnxruntime"][batch] = images_per_s(ort_run, batch, args.seconds)
    del sess
    time.sleep(1)

    cmd = [args.rap, "--json", "models", "bench", "efficientnet-lite0",
           "--seconds", str(args.seconds)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    row = next(r for r in json.loads(out)["encoders"] if r["encoder"] == "efficientnet-lite0")
    if row["weights"] != "installed":
        sys.exit("rap ran without the installed weights")
    rates = row["images_per_s"]
    results["rap"] = {b: rates[f"batch_{b}_images_per_s"] for b in (1, 8)}

    print(f"load average after:  {load_average()}")
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {THREADS} threads each; "
          f"ONNX Runtime vs PyTorch max abs diff {diff:.1e}")
    print(f"{'images/s':<14}{'batch 1':>10}{'batch 8':>10}")
    for name in ("rap", "pytorch", "onnxruntime"):
        r = results[name]
        print(f"{name:<14}{r[1]:>10.1f}{r[8]:>10.1f}")
    for name in ("pytorch", "onnxruntime"):
        r = results[name]
        print(f"{'rap / ' + name:<24}batch 1: {results['rap'][1] / r[1]:.2f}x   "
              f"batch 8: {results['rap'][8] / r[8]:.2f}x")


if __name__ == "__main__":
    main()
