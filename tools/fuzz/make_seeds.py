#!/usr/bin/env python3
"""Writes the small seed files of rap-fuzz's corpus that are binary (images, a GGUF file, a
legacy torch checkpoint). Run once with Pillow and torch installed; the outputs are committed,
so the tests never need Python:

    python3 tools/fuzz/make_seeds.py crates/rap-fuzz/corpus
"""
import io
import struct
import sys
from pathlib import Path

from PIL import Image


def images(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (8, 6))
    for x in range(8):
        for y in range(6):
            img.putpixel((x, y), (x * 30, y * 40, (x * y) % 256))
    img.save(out / "small.png")
    img.save(out / "small.jpg", quality=80)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate
    img.save(out / "rotated.jpg", quality=80, exif=exif.tobytes())
    img.save(out / "small.webp", lossless=True)
    img.save(out / "small.gif")
    img.save(out / "small.bmp")
    img.save(out / "small.tiff")
    img.convert("LA").save(out / "grey-alpha.png")
    img.convert("P").save(out / "palette.png")
    Image.new("RGB", (1, 40), (200, 10, 10)).save(out / "one-by-forty.png")
    Image.new("RGB", (40, 1), (10, 200, 10)).save(out / "forty-by-one.png")


def gguf_string(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf(out: Path):
    """A GGUF v3 file: a llama-style header with a three-token vocabulary and two tensors."""
    out.mkdir(parents=True, exist_ok=True)
    kvs = b""
    n = 0

    def kv(key, vtype, payload):
        nonlocal kvs, n
        kvs += gguf_string(key) + struct.pack("<I", vtype) + payload
        n += 1

    kv("general.architecture", 8, gguf_string("llama"))
    kv("general.alignment", 4, struct.pack("<I", 32))
    kv("llama.context_length", 4, struct.pack("<I", 128))
    kv("llama.rope.freq_base", 6, struct.pack("<f", 10000.0))
    kv("tokenizer.ggml.model", 8, gguf_string("gpt2"))
    tokens = ["<s>", "a", "b"]
    kv("tokenizer.ggml.tokens", 9,
       struct.pack("<IQ", 8, len(tokens)) + b"".join(gguf_string(t) for t in tokens))
    kv("tokenizer.ggml.token_type", 9, struct.pack("<IQ", 5, 3) + struct.pack("<3i", 3, 1, 1))
    kv("tokenizer.ggml.merges", 9, struct.pack("<IQ", 8, 1) + gguf_string("a b"))
    kv("tokenizer.ggml.bos_token_id", 4, struct.pack("<I", 0))
    kv("tokenizer.ggml.add_bos_token", 7, struct.pack("<?", True))
    tensors = [("token_embd.weight", [2, 3], 0, 0), ("output_norm.weight", [2], 0, 32)]
    infos = b""
    for name, dims, ggml_type, offset in tensors:
        infos += gguf_string(name) + struct.pack("<I", len(dims))
        infos += b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", ggml_type, offset)
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), n) + kvs + infos
    head += b"\0" * (-len(head) % 32)
    data = struct.pack("<6f", *range(6)) + b"\0" * 8 + struct.pack("<2f", 1, 1)
    (out / "tiny-llama.gguf").write_bytes(head + data)


def torch_legacy(out: Path):
    import torch

    out.mkdir(parents=True, exist_ok=True)
    state = {
        "conv.weight": torch.arange(12.0).reshape(2, 1, 2, 3),
        "bn.running_mean": torch.tensor([0.5, -0.5], dtype=torch.float32),
        "bn.num_batches_tracked": torch.tensor(3, dtype=torch.int64),
        "half": torch.ones(2, 2, dtype=torch.float16),
        "view": torch.arange(8.0)[2:6],
    }
    for name, obj in [("state.pth", state), ("wrapped.pth", {"state_dict": state, "epoch": 3})]:
        buf = io.BytesIO()
        torch.save(obj, buf, _use_new_zipfile_serialization=False)
        (out / name).write_bytes(buf.getvalue())


if __name__ == "__main__":
    root = Path(sys.argv[1])
    images(root / "image")
    gguf(root / "gguf")
    torch_legacy(root / "torch_legacy")
