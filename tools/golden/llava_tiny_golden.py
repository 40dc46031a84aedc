"""Golden outputs of a tiny random LLaVA-1.5 for crates/rap-llm-local/tests/llm_local/llava_golden.rs.

Builds a tiny LlavaForConditionalGeneration with transformers (fixed seed; CLIP vision tower of
3 layers on 32 px images with 8 px patches = 16 image tokens, `gelu` two-layer projector, a
2-layer Llama with grouped KV heads) and writes, under the output folder:
  hf/        the llava-hf layout: config.json (text_config / vision_config), model.safetensors,
             tokenizer.json, preprocessor_config.json;
  original/  the same weights in the original LLaVA layout (LlavaLlamaForCausalLM config with
             mm_* keys; model.embed_tokens, model.layers.*, model.mm_projector.{0,2}, lm_head)
             with the CLIP tower beside it as its own folder (original/clip-tiny, named by
             mm_vision_tower), as llava-v1.5 checkpoints come;
  lora/      a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) for hf/;
  images/    two synthetic, non-square PNG images;
  golden.json  the prompt, its token ids, the logits at a few positions and 16 greedy tokens,
             once for the base weights and once with the LoRA merged.

Weights are stored as float16 (as real checkpoints are) to keep the fixtures small; the reference
runs in float32 on those same float16-rounded values.

Prompt tokens follow the original LLaVA's `tokenizer_image_token`: the prompt is split at each
`<image>`, every chunk is tokenized on its own (BOS dropped from all but the first), and each
`<image>` becomes that image's 16 feature vectors. Images are preprocessed as LLaVA-1.5 does:
`expand2square` with the processor's mean colour, then the CLIP image processor.

Developer machine only (torch + transformers):
    python tools/golden/llava_tiny_golden.py crates/rap-llm-local/tests/fixtures/llava_tiny
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers

import transformers
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

SEED = 1235
IMAGE_SIZE = 32
PATCH = 8
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]
SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant "
          "gives helpful, detailed, and polite answers to the user's questions.")
PROMPT = (SYSTEM + " USER: <image>\n[1.<image>\n Name: <bo>, Info: <bo> is a shiba inu with a "
          "black collar.\n]Is <bo> in this image? ASSISTANT:")
CORPUS = [SYSTEM, PROMPT.replace("<image>", ""), "Yes, <bo> is in the image.",
          "Give a caption of the image.", "<dug> is a golden retriever. No."] * 3
N_GREEDY = 16
LORA_R = 4
LORA_ALPHA = 8
LORA_TARGETS = ["self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"]


def tokenizer():
    """A small Llama-style BPE tokenizer.json (SentencePiece-like: `▁` for spaces, a `▁`
    prepended to every text, BOS added by the post-processor)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    trainer = trainers.BpeTrainer(vocab_size=192, special_tokens=["<unk>", "<s>", "</s>"],
                                  show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    tok.add_special_tokens(["<image>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s>:0 $A:0", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    return tok


def images():
    """Seeded synthetic RGB images, none square: 32x20 and 20x32 (padded top/bottom and
    left/right to 32x32, no resize: the prompt's two images) and 48x36 (padded, then resized to
    32: checked on its own, since Pillow's and our bicubic resize may round a pixel one 8-bit
    level apart, which random weights amplify past any logit tolerance)."""
    rng = np.random.default_rng(SEED)
    out = []
    for (w, h) in [(32, 20), (20, 32), (48, 36)]:
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([np.sin(0.3 * xx + 0.2 * c) * np.cos(0.25 * yy - 0.1 * c) for c in range(3)], -1)
        arr = 127.5 + 90 * base + rng.normal(0, 20, size=(h, w, 3))
        out.append(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB"))
    return out


def expand2square(im, background):
    """LLaVA's expand2square (llava/mm_utils.py)."""
    w, h = im.size
    if w == h:
        return im
    if w > h:
        res = Image.new(im.mode, (w, w), background)
        res.paste(im, (0, (w - h) // 2))
        return res
    res = Image.new(im.mode, (h, h), background)
    res.paste(im, ((h - w) // 2, 0))
    return res


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            r = torch.randn(p.shape, generator=g)
            if ("norm" in name or "layrnorm" in name) and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * r)
            else:
                p.copy_(0.2 * r)
            # Round through float16, as the fixtures store them.
            p.copy_(p.to(torch.float16).to(torch.float32))


def prompt_ids(tok, prompt):
    chunks = prompt.split("<image>")
    bos = tok.token_to_id("<s>")
    out = []
    for i, c in enumerate(chunks):
        ids = tok.encode(c).ids
        if i > 0 and ids and ids[0] == bos:
            ids = ids[1:]
        out.append(ids)
    return out


def f16(sd):
    return {k: v.detach().to(torch.float16).contiguous() for k, v in sd.items()}


def run(model, input_ids, pixel_values, positions):
    """Logits at `positions` of the prompt, then greedy decoding (no stop on EOS) with the
    logits of every step."""
    with torch.no_grad():
        out = model(input_ids=input_ids, pixel_values=pixel_values)
        prompt_logits = {str(p): [round(float(x), 6) for x in out.logits[0, p]] for p in positions}
        ids = input_ids
        tokens, step_logits = [], []
        for _ in range(N_GREEDY):
            logits = model(input_ids=ids, pixel_values=pixel_values).logits[0, -1]
            step_logits.append([round(float(x), 6) for x in logits])
            nxt = int(torch.argmax(logits))
            top2 = torch.topk(logits, 2).values
            assert float(top2[0] - top2[1]) > 1e-3, "near tie in greedy decoding; change SEED"
            tokens.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
    return prompt_logits, tokens, step_logits


def main(out_dir):
    torch.manual_seed(SEED)
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    tok = tokenizer()
    vocab = tok.get_vocab_size()
    image_token = tok.token_to_id("<image>")
    n_patches = (IMAGE_SIZE // PATCH) ** 2

    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                              num_attention_heads=2, image_size=IMAGE_SIZE, patch_size=PATCH,
                              projection_dim=16, hidden_act="quick_gelu", layer_norm_eps=1e-5)
    text = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, vocab_size=vocab,
                       max_position_embeddings=512, rms_norm_eps=1e-5, rope_theta=10000.0,
                       bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=image_token,
                         projector_hidden_act="gelu", vision_feature_select_strategy="default",
                         vision_feature_layer=-2, image_seq_length=n_patches)
    model = LlavaForConditionalGeneration(config).eval()
    randomise(model, SEED)

    # --- llava-hf layout
    hf = os.path.join(out_dir, "hf")
    model.save_pretrained(hf, safe_serialization=True)
    sd = model.state_dict()
    save_file(f16(sd), os.path.join(hf, "model.safetensors"), metadata={"format": "pt"})
    tok.save(os.path.join(hf, "tokenizer.json"))
    proc = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE},
                                 crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                 image_mean=MEAN, image_std=STD, do_convert_rgb=True)
    proc.save_pretrained(hf)
    for f in os.listdir(hf):
        if f not in {"config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"}:
            os.remove(os.path.join(hf, f))
    keys = sorted(sd.keys())
    assert any(k.startswith("model.language_model.layers.") for k in keys), keys[:5]

    # --- original LLaVA layout
    orig = os.path.join(out_dir, "original")
    os.makedirs(orig)
    osd = {}
    for k, v in sd.items():
        if k.startswith("model.language_model."):
            osd["model." + k[len("model.language_model."):]] = v
        elif k.startswith("model.multi_modal_projector.linear_1."):
            osd["model.mm_projector.0." + k.split(".")[-1]] = v
        elif k.startswith("model.multi_modal_projector.linear_2."):
            osd["model.mm_projector.2." + k.split(".")[-1]] = v
        elif k == "lm_head.weight":
            osd[k] = v
    save_file(f16(osd), os.path.join(orig, "model.safetensors"), metadata={"format": "pt"})
    ocfg = {
        "architectures": ["LlavaLlamaForCausalLM"], "model_type": "llava_llama",
        "hidden_size": text.hidden_size, "intermediate_size": text.intermediate_size,
        "num_attention_heads": text.num_attention_heads, "num_hidden_layers": text.num_hidden_layers,
        "num_key_value_heads": text.num_key_value_heads, "vocab_size": vocab,
        "max_position_embeddings": text.max_position_embeddings, "rms_norm_eps": text.rms_norm_eps,
        "rope_theta": 10000.0, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
        "hidden_act": "silu", "tie_word_embeddings": False, "torch_dtype": "float16",
        "mm_hidden_size": vision.hidden_size, "mm_projector_type": "mlp2x_gelu",
        "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch",
        "mm_vision_tower": "clip-tiny", "image_aspect_ratio": "pad",
        "mm_use_im_start_end": False, "mm_use_im_patch_token": False,
    }
    with open(os.path.join(orig, "config.json"), "w") as f:
        json.dump(ocfg, f, indent=2)
    tok.save(os.path.join(orig, "tokenizer.json"))
    clip_dir = os.path.join(orig, "clip-tiny")
    os.makedirs(clip_dir)
    vsd = {"vision_model." + k[len("model.vision_tower."):]: v for k, v in sd.items() if k.startswith("model.vision_tower.")}
    save_file(f16(vsd), os.path.join(clip_dir, "model.safetensors"), metadata={"format": "pt"})
    vcfg = vision.to_dict()
    vcfg["architectures"] = ["CLIPVisionModel"]
    with open(os.path.join(clip_dir, "config.json"), "w") as f:
        json.dump(vcfg, f, indent=2)
    proc.save_pretrained(clip_dir)

    # --- inputs
    ims = images()
    img_dir = os.path.join(out_dir, "images")
    os.makedirs(img_dir)
    for i, im in enumerate(ims):
        im.save(os.path.join(img_dir, f"image{i}.png"))
    background = tuple(int(x * 255) for x in MEAN)
    all_pixels = torch.cat([proc(expand2square(im, background), return_tensors="pt")["pixel_values"]
                            for im in ims])
    pixel_values = all_pixels[:2]
    chunks = prompt_ids(tok, PROMPT)
    assert len(chunks) == 3
    input_ids = chunks[0] + [image_token] * n_patches + chunks[1] + [image_token] * n_patches + chunks[2]
    n = len(input_ids)
    a = len(chunks[0])
    b = a + n_patches + len(chunks[1])
    # Positions: before the first image, its last feature, between the images, the second
    # image's last feature, the middle of the question, the end of the prompt.
    positions = [a - 1, a + n_patches - 1, a + n_patches + 1, b + n_patches - 1, (b + n_patches + n) // 2, n - 1]
    ids_t = torch.tensor([input_ids])
    base = run(model, ids_t, pixel_values, positions)

    # --- LoRA adapter, merged by hand (W += alpha / r * B @ A)
    g = torch.Generator().manual_seed(SEED + 1)
    lora, merged = {}, {}
    targets = [f"model.language_model.layers.{i}.{t}" for i in range(text.num_hidden_layers)
               for t in LORA_TARGETS] + ["model.multi_modal_projector.linear_1"]
    for t in targets:
        w = sd[t + ".weight"]
        A = 0.3 * torch.randn((LORA_R, w.shape[1]), generator=g)
        B = 0.3 * torch.randn((w.shape[0], LORA_R), generator=g)
        lora[f"base_model.model.{t}.lora_A.weight"] = A
        lora[f"base_model.model.{t}.lora_B.weight"] = B
        merged[t + ".weight"] = w + (LORA_ALPHA / LORA_R) * (B @ A)
    lora_dir = os.path.join(out_dir, "lora")
    os.makedirs(lora_dir)
    save_file(lora, os.path.join(lora_dir, "adapter_model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(lora_dir, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "base_model_name_or_path": "../hf", "r": LORA_R,
                   "lora_alpha": LORA_ALPHA, "lora_dropout": 0.05, "bias": "none",
                   "fan_in_fan_out": False, "use_rslora": False, "task_type": "CAUSAL_LM",
                   "target_modules": ["q_proj", "v_proj", "down_proj", "linear_1"]}, f, indent=2)
    with torch.no_grad():
        params = dict(model.named_parameters())
        for k, v in merged.items():
            params[k].copy_(v)
    with_lora = run(model, ids_t, pixel_values, positions)

    golden = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "prompt": PROMPT,
        "system": SYSTEM,
        "image_tokens": n_patches,
        "prompt_chunks": chunks,
        "sequence_length": n,
        "positions": positions,
        "pixel_values": [[round(float(x), 6) for x in pv.flatten()] for pv in all_pixels],
        "base": {"prompt_logits": base[0], "greedy_tokens": base[1], "step_logits": base[2],
                 "greedy_text": tok.decode(base[1])},
        "lora": {"prompt_logits": with_lora[0], "greedy_tokens": with_lora[1],
                 "step_logits": with_lora[2], "greedy_text": tok.decode(with_lora[1])},
    }
    with open(os.path.join(out_dir, "golden.json"), "w") as f:
        json.dump(golden, f)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out_dir) for f in fs)
    print(f"wrote {out_dir}: {total} bytes; base greedy {base[1]}; lora greedy {with_lora[1]}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "crates/rap-llm-local/tests/fixtures/llava_tiny")
