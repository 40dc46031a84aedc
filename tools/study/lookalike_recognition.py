#!/usr/bin/env python3
"""Builds a recognition test in the reference's `recognition_test.json` format for the
reference's 10-concept example memory, from photos we have (issue 18, point 6).

The reference's own test photos (yollava-data/test/...) are not available here, so:
- positives are new views of each concept made from its one reference image, with a fixed
  seed: a flipped 80-90% crop, the image shrunk to 40-55% and pasted on a photo of an
  unrelated dreambooth-dev subject, and a slightly rotated, darker copy. They are easier than
  real new photos (same pixels), so the positive accuracy is an upper bound;
- negatives are look-alikes from dreambooth-dev: other dogs (vs bo, butin, dug), a cat, plush
  and toy animals (vs brown-duck, dragon, duck-banana), a cartoon (vs dug), a bowl (vs
  cat-cup); every photo is asked about every concept, and the answer is always "no".

Usage (needs Pillow):
  python3 tools/study/lookalike_recognition.py --example ../shared/datasets/rap-example \
      --dreambooth ../shared/datasets/dreambooth-dev --out lookalikes
  rap import ../shared/datasets/rap-example/example_database/database.json
  rap eval recognition --file lookalikes/recognition_test.json \
      --images-root lookalikes --retriever-only
"""
import argparse
import json
import random
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

LOOKALIKES = [
    "dog", "dog2", "dog3", "cat", "bear_plushie", "grey_sloth_plushie", "duck_toy",
    "monster_toy", "red_cartoon", "berry_bowl",
]
BACKGROUNDS = ["can", "candle", "clock", "backpack", "fancy_boot"]
QUESTION = "<image>\nIs <{}> in this image? Answer with a single word or phrase."


def photos(folder: Path):
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def views(image: Image.Image, backgrounds, rng: random.Random):
    """Three new views of one reference image."""
    w, h = image.size
    # A flipped crop of 80-90% of each side at a random place.
    f = rng.uniform(0.8, 0.9)
    cw, ch = int(w * f), int(h * f)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    yield "crop", ImageOps.mirror(image.crop((x, y, x + cw, y + ch)))
    # Shrunk and pasted on an unrelated photo.
    bg = Image.open(rng.choice(backgrounds)).convert("RGB")
    bg.thumbnail((1024, 1024))
    scale = rng.uniform(0.4, 0.55) * min(bg.size) / max(w, h)
    small = image.resize((max(1, int(w * scale)), max(1, int(h * scale))), Image.BICUBIC)
    px = rng.randint(0, bg.size[0] - small.size[0])
    py = rng.randint(0, bg.size[1] - small.size[1])
    bg.paste(small, (px, py))
    yield "pasted", bg
    # Slightly rotated and darker.
    turned = image.rotate(rng.uniform(-10, 10), resample=Image.BICUBIC, expand=False,
                          fillcolor=(128, 128, 128))
    yield "turned", ImageEnhance.Brightness(turned).enhance(rng.uniform(0.75, 0.9))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--example", type=Path, required=True, help="the rap-example folder")
    ap.add_argument("--dreambooth", type=Path, required=True, help="the dreambooth-dev folder")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=18)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    db = json.loads((args.example / "example_database" / "database.json").read_text())
    concepts = [c["name"] for c in db["concept_dict"].values()]
    (args.out / "positives").mkdir(parents=True, exist_ok=True)
    backgrounds = [p for s in BACKGROUNDS for p in photos(args.dreambooth / s)]
    rows = []

    def ask(image: str, present: str | None):
        for c in concepts:
            rows.append({
                "image": image,
                "question": QUESTION.format(c),
                "concept": c,
                "type": "positive" if c == present else "negative",
                "correct_answer": c == present,
            })

    for entry in db["concept_dict"].values():
        reference = Image.open(args.example / entry["image"]).convert("RGB")
        for kind, view in views(reference, backgrounds, rng):
            name = f"positives/{entry['name']}-{kind}.jpg"
            view.save(args.out / name, quality=92)
            ask(name, entry["name"])
    for subject in LOOKALIKES:
        for p in photos(args.dreambooth / subject):
            # The photo itself, by a path relative to --out.
            target = args.out / "lookalikes" / subject / p.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.write_bytes(p.read_bytes())
            ask(f"lookalikes/{subject}/{p.name}", None)
    (args.out / "recognition_test.json").write_text(json.dumps(rows, indent=1))
    positives = sum(r["correct_answer"] for r in rows)
    print(f"{len(rows)} questions ({positives} positive) on "
          f"{len(rows) // len(concepts)} images in {args.out}")


if __name__ == "__main__":
    main()
