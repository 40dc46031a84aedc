"""Golden outputs of the Hugging Face encoders (CLIP, DINOv2, SigLIP) for
crates/rap-vision/tests/vision/golden_hf.rs.

For each architecture it builds a tiny model with random weights (fixed seed, a few layers,
small width) with transformers, saves it in the standard Hugging Face folder layout
(config.json, model.safetensors, preprocessor_config.json, tokenizer.json for the text towers)
and records, with the reference implementation (transformers' PIL image processors and the
PyTorch models):
  - the image embeddings (before L2 normalisation) of a fixed synthetic pixel tensor that the
    Rust test rebuilds from the same formula (the model alone);
  - the preprocessing of a real photo (sha256 of the resized + cropped uint8 pixels, and the
    first normalised values) and the image embedding of that photo (processor + model);
  - the token ids and text embeddings of fixed texts (CLIP, SigLIP).
It also records the processed pixels of the real photo under the preprocessor configs of the
real checkpoints (openai/clip-vit-base-patch32, openai/clip-vit-large-patch14-336,
facebook/dinov2-small, google/siglip-base-patch16-224), so the Rust preprocessing is checked at
real sizes too.

The photos (two dreambooth-dev JPEGs and a PNG of the rap example) are read from the shared
datasets at generation time, never copied into the repo. JPEG decoders differ by a level here
and there (rap decodes with zune-jpeg, Pillow with libjpeg), so the script starts from the pixels
as rap decodes them, written losslessly by a Rust example; what is compared is then exactly the
preprocessing (Pillow's resize, transformers' crop and normalisation) and the model.
Developer machine only (needs torch + transformers; see the project's models documentation):
    cargo run -p rap-vision --example hf_golden_inputs -- /tmp/hf-golden-inputs
    python tools/golden/hf_encoders_golden.py /tmp/hf-golden-inputs crates/rap-vision/tests/fixtures/hf
It also builds a tiny OWLv2 detector (Owlv2ForObjectDetection, folder owlv2/ and
owlv2_golden.json; `--only owlv2` writes just those, into crates/rap-detect/tests/fixtures/hf where
the detector's tests read them) and records, for two photos cut to
non-square windows and three text queries, the preprocessed pixels (a sample and statistics),
the class logits, objectness logits, predicted boxes and the post-processed detections.
Needs scipy too (Owlv2ImageProcessorPil resizes with scipy.ndimage).
"""
import hashlib
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image, ImageOps
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

import transformers
from transformers import (
    CLIPConfig,
    CLIPModel,
    Dinov2Config,
    Dinov2Model,
    Owlv2Config,
    Owlv2ForObjectDetection,
    SiglipConfig,
    SiglipModel,
)
from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.owlv2.image_processing_pil_owlv2 import Owlv2ImageProcessorPil
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

HERE = os.path.dirname(os.path.abspath(__file__))
DATASETS = os.path.normpath(os.path.join(HERE, "../../../shared/datasets"))
PHOTOS = ["dreambooth-dev/dog/00.jpg", "dreambooth-dev/candle/00.jpg",
          "rap-example/example_database/bo.png"]
INPUTS = None  # the folder written by the hf_golden_inputs example
TEXTS = ["a photo of a dog", "my red mug on the table", "dog"]
WORDS = ("a photo of dog cat my red mug on the table candle backpack bowl is in this image "
         "black white big small").split()
OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def synthetic_pixels(batch, size):
    """The model-only input; crates/rap-vision/tests/vision/golden_hf.rs builds the same tensor:
    x[b, c, y, x] = sin(0.37 * (b + 1) + 0.11 * c + 0.05 * y - 0.07 * x) * 1.5."""
    b, c, y, x = np.meshgrid(np.arange(batch), np.arange(3), np.arange(size), np.arange(size),
                             indexing="ij")
    v = np.sin(0.37 * (b + 1) + 0.11 * c + 0.05 * y - 0.07 * x) * 1.5
    return torch.from_numpy(v.astype(np.float32))


def randomise(model, seed):
    """Every parameter random (not just the default init, whose biases are zero and norms one),
    so a wrongly loaded bias, norm or scale shows up."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            r = torch.randn(p.shape, generator=g)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * r)
            elif "lambda1" in name:
                p.copy_(0.5 + 0.2 * r)
            elif "logit" in name:
                continue
            else:
                p.copy_(0.2 * r)


def word_tokenizer(bos, eos, pad, unk, lowercase=True):
    """A small word-level tokenizer.json: the same file format as the real checkpoints'
    (normaliser, pre-tokeniser, model, post-processor adding the special tokens)."""
    specials = [t for t in [pad, unk, bos, eos] if t is not None]
    vocab = {}
    for t in specials[:2]:
        vocab.setdefault(t, len(vocab))
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    for t in specials[2:]:
        vocab.setdefault(t, len(vocab))  # EOS last: the highest id, as in CLIP
    tok = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    if lowercase:
        tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    single = ([f"{bos}:0"] if bos else []) + ["$A:0"] + [f"{eos}:0"]
    special = [(t, vocab[t]) for t in [bos, eos] if t is not None]
    tok.post_processor = processors.TemplateProcessing(single=" ".join(single), special_tokens=special)
    return tok, vocab


def photo(rel):
    """The photo as rap decodes it (see the module docstring)."""
    decoded = Image.open(os.path.join(INPUTS, rel.replace("/", "__") + ".png")).convert("RGB")
    # Same size as Pillow's own decoding (after EXIF orientation): the dump is of this photo.
    ref = ImageOps.exif_transpose(Image.open(os.path.join(DATASETS, rel)))
    assert ref.size == decoded.size, (rel, ref.size, decoded.size)
    return decoded


def processed(proc, im):
    """(sha256 of the geometric result as uint8 HWC, normalised pixel_values as a tensor)."""
    geo = proc(im, do_rescale=False, do_normalize=False, return_tensors="np")["pixel_values"][0]
    u8 = np.ascontiguousarray(np.round(geo).astype(np.uint8).transpose(1, 2, 0))
    assert np.abs(u8.astype(np.float64) - geo.transpose(1, 2, 0)).max() == 0
    pv = proc(im, return_tensors="pt")["pixel_values"]
    return hashlib.sha256(u8.tobytes()).hexdigest(), pv, u8


def rounded(t):
    return [round(float(v), 7) for v in t.flatten().tolist()]


def save_folder(model, proc, tok, out_dir, extra_files=()):
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    proc.save_pretrained(out_dir)
    if tok is not None:
        tok.save(os.path.join(out_dir, "tokenizer.json"))
    # Keep only what a loader needs (save_pretrained may add generation configs etc.).
    keep = {"config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json"}
    for f in os.listdir(out_dir):
        if f not in keep:
            os.remove(os.path.join(out_dir, f))


# Pillow 13 sometimes runs its vertical pass before the horizontal one when both axes shrink
# (rounding to 8 bits in between, so a pixel can move by a level or two); the rule is not yet
# reproduced in crates/rap-image/src/pillow.rs, which always goes horizontal first. It agrees
# exactly for the shortest-edge resizes (CLIP, DINOv2) of every photo here and for SigLIP's
# fixed-size resize of the square photos, which are what is pinned.
SQUARE_PHOTOS = PHOTOS[:2]


def photo_entries(proc, embed, photos=PHOTOS):
    out = []
    for rel in photos:
        sha, pv, _ = processed(proc, photo(rel))
        out.append({
            "photo": rel,
            "pixels_sha256": sha,
            "input_first_values": rounded(pv.flatten()[:16]),
            "input_mean": float(pv.double().mean()),
            "embedding": rounded(embed(pv)[0]),
        })
    return out


def clip(out_dir):
    torch.manual_seed(1)
    tok, vocab = word_tokenizer("<|startoftext|>", "<|endoftext|>", None, "<|unk|>")
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                         num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=16,
                         hidden_act="quick_gelu", bos_token_id=vocab["<|startoftext|>"],
                         eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"]),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                           num_attention_heads=2, image_size=64, patch_size=16,
                           hidden_act="quick_gelu"),
        projection_dim=12,
    )
    model = CLIPModel(cfg).eval()
    randomise(model, 11)
    proc = CLIPImageProcessorPil(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64},
                                 image_mean=OPENAI_MEAN, image_std=OPENAI_STD)
    save_folder(model, proc, tok, out_dir)
    model = CLIPModel.from_pretrained(out_dir).eval()

    def embed(pv):
        return model.visual_projection(model.vision_model(pixel_values=pv).pooler_output)

    texts = []
    for t in TEXTS:
        ids = torch.tensor([tok.encode(t).ids])
        e = model.text_projection(model.text_model(input_ids=ids).pooler_output)
        texts.append({"text": t, "ids": ids[0].tolist(), "embedding": rounded(e[0])})
    return {
        "model_type": "clip",
        "dim": 12,
        "synthetic": {"batch": 2, "size": 64, "embeddings": [rounded(r) for r in embed(synthetic_pixels(2, 64))]},
        "photos": photo_entries(proc, embed),
        "texts": texts,
    }


def dinov2(out_dir):
    torch.manual_seed(2)
    # image_size 280 / patch 14 = 20 x 20 positions, resized (bicubic) to the 16 x 16 patches of
    # a 224 input, as the real checkpoints' 37 x 37 are.
    cfg = Dinov2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                       image_size=280, patch_size=14)
    model = Dinov2Model(cfg).eval()
    randomise(model, 12)
    proc = BitImageProcessorPil(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                                image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, do_convert_rgb=True)
    save_folder(model, proc, None, out_dir)
    model = Dinov2Model.from_pretrained(out_dir).eval()

    def embed(pv):
        return model(pixel_values=pv).pooler_output

    return {
        "model_type": "dinov2",
        "dim": 16,
        "synthetic": {"batch": 2, "size": 224, "embeddings": [rounded(r) for r in embed(synthetic_pixels(2, 224))]},
        "photos": photo_entries(proc, embed),
        "texts": [],
    }


def siglip(out_dir):
    torch.manual_seed(3)
    tok, vocab = word_tokenizer(None, "</s>", "<pad>", "<unk>")
    cfg = SiglipConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                         num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=16,
                         pad_token_id=vocab["<pad>"], eos_token_id=vocab["</s>"]),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                           num_attention_heads=2, image_size=224, patch_size=16),
    )
    model = SiglipModel(cfg).eval()
    randomise(model, 13)
    proc = SiglipImageProcessorPil(size={"height": 224, "width": 224})
    save_folder(model, proc, tok, out_dir)
    model = SiglipModel.from_pretrained(out_dir).eval()

    def embed(pv):
        return model.vision_model(pixel_values=pv).pooler_output

    texts = []
    for t in TEXTS:
        ids = tok.encode(t).ids[:16]
        ids = ids + [vocab["<pad>"]] * (16 - len(ids))  # padding="max_length", as trained
        ids = torch.tensor([ids])
        e = model.text_model(input_ids=ids).pooler_output
        texts.append({"text": t, "ids": ids[0].tolist(), "embedding": rounded(e[0])})
    return {
        "model_type": "siglip",
        "dim": 16,
        "synthetic": {"batch": 2, "size": 224, "embeddings": [rounded(r) for r in embed(synthetic_pixels(2, 224))]},
        "photos": photo_entries(proc, embed, SQUARE_PHOTOS),
        "texts": texts,
    }


# OWLv2 (Owlv2ForObjectDetection): the open-vocabulary detector. Its image processor (the PIL
# backend, which is the original implementation's: skimage-style resize with scipy) rescales
# to [0, 1], pads to a square with zeros at the bottom/right, blurs with a Gaussian
# (sigma = (factor - 1) / 2) and zooms bilinearly, then normalises. The photos are cut to
# non-square windows (exact crops, which the Rust test repeats) so the padding is exercised.
OWL_PHOTOS = [
    # (photo, (left, top, width, height)) of the decoded image.
    ("dreambooth-dev/dog/00.jpg", (0, 130, 780, 520)),  # wide: padded at the bottom
    ("rap-example/example_database/bo.png", (0, 0, 452, 803)),  # tall: padded on the right
]
OWL_QUERIES = ["a photo of a dog", "candle", "my red mug"]


def owlv2(out_dir):
    torch.manual_seed(4)
    tok, vocab = word_tokenizer("<|startoftext|>", "<|endoftext|>", None, "<|unk|>")
    pad_id = 0  # the real checkpoints pad with "!", id 0; query_mask = first id > 0
    cfg = Owlv2Config(
        # projection_dim must equal the text width (the class head compares the projected
        # text embedding with dense0 of the patches, whose width is the text width).
        text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                         num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=16,
                         hidden_act="quick_gelu", bos_token_id=vocab["<|startoftext|>"],
                         eos_token_id=vocab["<|endoftext|>"], pad_token_id=pad_id),
        vision_config=dict(hidden_size=24, intermediate_size=40, num_hidden_layers=2,
                           num_attention_heads=2, image_size=96, patch_size=16,
                           hidden_act="quick_gelu"),
        projection_dim=16,
    )
    model = Owlv2ForObjectDetection(cfg).eval()
    g = torch.Generator().manual_seed(14)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            r = torch.randn(p.shape, generator=g)
            if name == "owlv2.logit_scale":
                continue  # the contrastive temperature; not used by detection
            if ("norm" in name) and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * r)
            else:
                p.copy_(0.2 * r)
    proc = Owlv2ImageProcessorPil(size={"height": 96, "width": 96}, image_mean=OPENAI_MEAN,
                                  image_std=OPENAI_STD)
    save_folder(model, proc, tok, out_dir)
    model = Owlv2ForObjectDetection.from_pretrained(out_dir).eval()
    proc = Owlv2ImageProcessorPil.from_pretrained(out_dir)

    ids = []
    for q in OWL_QUERIES:
        i = tok.encode(q).ids[:16]
        ids.append(i + [pad_id] * (16 - len(i)))  # padding="max_length", as Owlv2Processor does
    input_ids = torch.tensor(ids)
    attention_mask = (torch.arange(16)[None, :] < torch.tensor([len(tok.encode(q).ids) for q in OWL_QUERIES])[:, None]).long()

    photos = []
    for rel, (left, top, w, h) in OWL_PHOTOS:
        im = photo(rel).crop((left, top, left + w, top + h))
        pv = proc(im, return_tensors="pt")["pixel_values"]
        out = model(input_ids=input_ids, pixel_values=pv, attention_mask=attention_mask)
        flat = pv.flatten()
        post = proc.post_process_object_detection(out, threshold=0.0, target_sizes=[(h, w)])[0]
        photos.append({
            "photo": rel,
            "crop": [left, top, w, h],
            "input_shape": list(pv.shape[1:]),
            "input_mean": float(pv.double().mean()),
            "input_abs_mean": float(pv.double().abs().mean()),
            # every 97th value (C, H, W order), a stride coprime with the sizes
            "input_every_97th": rounded(flat[::97]),
            "logits": [rounded(r) for r in out.logits[0]],
            "objectness_logits": rounded(out.objectness_logits[0]),
            "pred_boxes": [rounded(r) for r in out.pred_boxes[0]],
            # post_process_object_detection (threshold 0): boxes in the photo's pixels
            "post_scores": rounded(post["scores"]),
            "post_labels": post["labels"].tolist(),
            "post_boxes": [rounded(r) for r in post["boxes"]],
        })
    # The real checkpoint's processor (google/owlv2-base-patch16: 960 x 960, the class
    # defaults) on real sizes: the dog cut (780 wide, padded, then enlarged) and the whole
    # candle photo (1024, slightly shrunk).
    real = []
    real_proc = Owlv2ImageProcessorPil()
    for rel, (left, top, w, h) in [OWL_PHOTOS[0], ("dreambooth-dev/candle/00.jpg", (0, 0, 1024, 1024))]:
        im = photo(rel).crop((left, top, left + w, top + h))
        pv = real_proc(im, return_tensors="pt")["pixel_values"]
        real.append({
            "photo": rel, "crop": [left, top, w, h],
            "preprocessor_config": json.loads(real_proc.to_json_string()),
            "input_shape": list(pv.shape[1:]),
            "input_mean": float(pv.double().mean()),
            "input_abs_mean": float(pv.double().abs().mean()),
            "input_every_997th": rounded(pv.flatten()[::997]),
        })
    return {
        "model_type": "owlv2",
        "real_preprocessing": real,
        "queries": OWL_QUERIES,
        "query_ids": [tok.encode(q).ids for q in OWL_QUERIES],
        "num_patches": 36,
        "photos": photos,
    }


def real_preprocessing():
    """The preprocessor configs of the real checkpoints (as published), on the real photos."""
    configs = {
        "openai/clip-vit-base-patch32": CLIPImageProcessorPil(
            size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224},
            image_mean=OPENAI_MEAN, image_std=OPENAI_STD),
        "openai/clip-vit-large-patch14-336": CLIPImageProcessorPil(
            size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
            image_mean=OPENAI_MEAN, image_std=OPENAI_STD),
        "facebook/dinov2-small": BitImageProcessorPil(
            size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
            image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD),
        "google/siglip-base-patch16-224": SiglipImageProcessorPil(size={"height": 224, "width": 224}),
    }
    out = []
    for name, proc in configs.items():
        d = proc.to_dict()
        d.pop("image_processor_type", None)
        for rel in SQUARE_PHOTOS if "siglip" in name else PHOTOS:
            sha, pv, _ = processed(proc, photo(rel))
            out.append({"checkpoint": name, "preprocessor_config": json.loads(proc.to_json_string()),
                        "photo": rel, "pixels_sha256": sha,
                        "shape": list(pv.shape[1:]), "input_mean": float(pv.double().mean()),
                        "input_first_values": rounded(pv.flatten()[:16])})
    return out


def main(inputs, out_root, only=None):
    global INPUTS
    INPUTS = inputs
    torch.set_grad_enabled(False)
    os.makedirs(out_root, exist_ok=True)
    if only in (None, "owlv2"):
        owl = {"generator": "tools/golden/hf_encoders_golden.py", "torch": torch.__version__,
               "transformers": transformers.__version__,
               "owlv2": owlv2(os.path.join(out_root, "owlv2"))}
        with open(os.path.join(out_root, "owlv2_golden.json"), "w") as f:
            json.dump(owl, f, indent=1)
    if only == "owlv2":
        return
    golden = {
        "generator": "tools/golden/hf_encoders_golden.py",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "texts": TEXTS,
        "models": {},
        "real_preprocessing": real_preprocessing(),
    }
    for name, build in [("clip", clip), ("dinov2", dinov2), ("siglip", siglip)]:
        golden["models"][name] = build(os.path.join(out_root, name))
    with open(os.path.join(out_root, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
    total = 0
    for root, _, files in os.walk(out_root):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    print("wrote", out_root, total, "bytes")


if __name__ == "__main__":
    # --only owlv2: the detector's fixture alone (tests/fixtures/hf/owlv2{,_golden.json}),
    # leaving the encoders' files as they are.
    only = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--only" else None
    main(sys.argv[1], sys.argv[2], only)
