"""The ViT encoders on the CPU: rap against PyTorch (transformers) eager, side by side.

The image towers of the catalogued Hugging Face checkpoints (CLIP, DINOv2, SigLIP) at their
published sizes with all-zero weights (the speed does not depend on the values), the same
configs as `rap_vision::reference::reference_configs`, which `rap models bench NAME` runs
when the real weights are not installed. The same work on both sides: the synthetic 640x480
photo of `rap models bench`, resized (bicubic, shorter edge to the model's size) and centre-
cropped, normalised, run through the tower to the embedding (CLIP: the projected class
token; DINOv2: the class token after the last layer norm; SigLIP: the attention-pooled
head); preprocessing is inside the timed loop on both sides. 2 threads each (PyTorch's
intra-op threads, RAYON_NUM_THREADS for rap); each batch size gets one warm-up run, then runs
until `--seconds` have passed (at least two).

It prints images/s at batch 1 and 8 for each model and rap's over PyTorch's, with the load
average before and after: on a busy machine (load over the core count) the figures are noise.

Needs torch, transformers, numpy and pillow (pip install torch transformers numpy pillow).

    cargo build --release -p rap
    python3 tools/bench/vit_vs_torch.py [--rap target/release/rap] [--seconds 3] [NAME...]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

THREADS = 2
DEFAULT = ["clip-vit-base-patch32", "dinov2-small", "dinov2-base", "siglip-base-patch16-224"]


def towers():
    """name -> (input size, a function building the zero-weight tower, a function taking
    the model's output to the embedding). The sizes are rap's reference configs."""
    from transformers import (CLIPVisionConfig, CLIPVisionModelWithProjection, Dinov2Config,
                              Dinov2Model, SiglipVisionConfig, SiglipVisionModel)

    def clip(hidden, inter, layers, heads, patch, image, proj):
        cfg = CLIPVisionConfig(hidden_size=hidden, intermediate_size=inter,
                               num_hidden_layers=layers, num_attention_heads=heads,
                               patch_size=patch, image_size=image, projection_dim=proj,
                               hidden_act="quick_gelu")
        return image, lambda: CLIPVisionModelWithProjection(cfg), lambda o: o.image_embeds

    def dinov2(hidden, heads):
        cfg = Dinov2Config(hidden_size=hidden, num_hidden_layers=12, num_attention_heads=heads,
                           mlp_ratio=4, image_size=518, patch_size=14)
        # rap's DINOv2 preprocessing: shorter edge to 256, centre crop 224.
        return 224, lambda: Dinov2Model(cfg), lambda o: o.pooler_output

    siglip_cfg = SiglipVisionConfig(hidden_size=768, intermediate_size=3072,
                                    num_hidden_layers=12, num_attention_heads=12,
                                    patch_size=16, image_size=224)
    return {
        "clip-vit-base-patch32": clip(768, 3072, 12, 12, 32, 224, 512),
        "clip-vit-large-patch14": clip(1024, 4096, 24, 16, 14, 224, 768),
        "clip-vit-large-patch14-336": clip(1024, 4096, 24, 16, 14, 336, 768),
        "dinov2-small": dinov2(384, 6),
        "dinov2-base": dinov2(768, 12),
        "siglip-base-patch16-224": (224, lambda: SiglipVisionModel(siglip_cfg),
                                    lambda o: o.pooler_output),
    }


def photo():
    """The 640x480 image of `rap models bench`."""
    import numpy as np
    from PIL import Image

    x = np.arange(640, dtype=np.int64)[None, :]
    y = np.arange(480, dtype=np.int64)[:, None]
    px = np.stack(np.broadcast_arrays(x % 251, y % 241, (x * y) % 239), axis=-1)
    return Image.fromarray(px.astype(np.uint8), "RGB")


def preprocess(images, size):
    """Shorter edge to `size` (bicubic), centre crop, (x / 255 - 0.5) / 0.5, NCHW float32."""
    import numpy as np
    from PIL import Image

    out = np.empty((len(images), 3, size, size), dtype=np.float32)
    for i, im in enumerate(images):
        w, h = im.size
        s = size / min(w, h)
        im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        px = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.float32)
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
    ap.add_argument("names", nargs="*", default=DEFAULT,
                    help=f"catalogued models [{' '.join(DEFAULT)}]")
    ap.add_argument("--rap", default="target/release/rap", help="the rap binary")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    try:
        import numpy  # noqa: F401
        import PIL  # noqa: F401
        import torch
        import transformers
    except ImportError as e:
        sys.exit(f"missing {e.name}: pip install torch transformers numpy pillow")
    known = towers()
    for name in args.names:
        if name not in known:
            sys.exit(f"unknown model {name}: one of {', '.join(known)}")

    print(f"load average before: {load_average()}  ({os.cpu_count()} cores)")
    torch.set_grad_enabled(False)
    torch.set_num_threads(THREADS)
    results = {}
    for name in args.names:
        size, build, embedding = known[name]
        model = build().eval()
        for p in model.parameters():
            p.data.zero_()

        def run(images):
            return embedding(model(pixel_values=torch.from_numpy(preprocess(images, size))))

        results[name] = {"pytorch": {b: images_per_s(run, b, args.seconds) for b in (1, 8)}}
        del model
    time.sleep(1)

    # An empty models directory: rap runs the zero-weight reference towers.
    with tempfile.TemporaryDirectory(prefix="rap-vit-bench-") as models:
        env = dict(os.environ, RAYON_NUM_THREADS=str(THREADS), RAP_MODELS_DIR=models)
        cmd = [args.rap, "--json", "models", "bench", *args.names, "--seconds", str(args.seconds)]
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    for row in json.loads(out)["encoders"]:
        rates = row["images_per_s"]
        results[row["encoder"]]["rap"] = {b: rates[f"batch_{b}_images_per_s"] for b in (1, 8)}

    print(f"load average after:  {load_average()}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{THREADS} threads each, zero weights")
    print(f"{'images/s':<28}{'rap b1':>9}{'torch b1':>9}{'ratio':>7}"
          f"{'rap b8':>9}{'torch b8':>9}{'ratio':>7}")
    for name in args.names:
        r, t = results[name]["rap"], results[name]["pytorch"]
        print(f"{name:<28}{r[1]:>9.2f}{t[1]:>9.2f}{r[1] / t[1]:>6.2f}x"
              f"{r[8]:>9.2f}{t[8]:>9.2f}{r[8] / t[8]:>6.2f}x")


if __name__ == "__main__":
    main()
