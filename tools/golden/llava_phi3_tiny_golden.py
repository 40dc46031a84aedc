"""Golden outputs of a tiny random LLaVA with a Phi-3 language model (RAP-Phi3-mini's
architecture) for crates/rap-llm-local/tests/llm_local/llava_phi3_golden.rs.

Builds a tiny LlavaForConditionalGeneration whose text_config is a Phi3Config (fused qkv_proj and
gate_up_proj, grouped KV heads, a sliding window shorter than the prompt so the window mask is
exercised) with transformers and a fixed seed, on the same tiny CLIP tower and images as
llava_tiny_golden.py (16 tokens per 32 px image), and writes under the output folder:
  hf/        the llava-hf layout (config.json with a `phi3` text_config, model.safetensors,
             tokenizer.json with Phi-3's special tokens, preprocessor_config.json);
  original/  the same weights in LLaVA-pp's `LlavaPhiForCausalLM` layout (flat Phi-3 config with
             mm_* keys and `image_aspect_ratio: pad`; model.embed_tokens, model.layers.*,
             model.mm_projector.{0,2}, lm_head, and the CLIP tower inside the checkpoint under
             model.vision_tower.vision_tower.vision_model.*, its config in vision_tower/);
  longrope.json  a config.json for hf/ with Phi-3's LongRoPE (`rope_scaling` short / long
             factors), whose prompt logits are in golden.json too;
  golden.json  the prompt (phi3_instruct), its token ids, the preprocessed pixels of all three
             images, logits at a few positions and 16 greedy tokens (no stop on EOS).

Weights are stored as float16; the reference runs in float32 on the same rounded values.

Developer machine only (torch + transformers):
    python tools/golden/llava_phi3_tiny_golden.py crates/rap-llm-local/tests/fixtures/llava_phi3_tiny
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers

import transformers
from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration, Phi3Config
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llava_tiny_golden import (IMAGE_SIZE, MEAN, PATCH, STD, expand2square, f16, images,  # noqa: E402
                               prompt_ids, randomise, run)

SEED = 4242
SYSTEM = "You are a helpful AI assistant."
PROMPT = (f"<|system|>\n{SYSTEM}<|end|>\n<|user|>\n<image>\n[1.<image>\n Name: <bo>, Info: <bo> is a "
          "shiba inu with a black collar.\n]Is <bo> in this image?<|end|>\n<|assistant|>\n")
SPECIALS = ["<|endoftext|>", "<|assistant|>", "<|end|>", "<|system|>", "<|user|>"]
CORPUS = [SYSTEM, "Is <bo> in this image? Name: <bo>, Info: <bo> is a shiba inu with a black collar.",
          "Yes, <bo> is in the image.", "Give a caption of the image.",
          "<dug> is a golden retriever. No."] * 3
SLIDING_WINDOW = 40


def tokenizer():
    """A small Llama-style BPE tokenizer.json with Phi-3's chat tokens as special tokens."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    trainer = trainers.BpeTrainer(vocab_size=160, special_tokens=["<unk>", "<s>", "</s>"],
                                  show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    tok.add_special_tokens(SPECIALS + ["<image>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s>:0 $A:0", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    return tok


def main(out_dir):
    torch.manual_seed(SEED)
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    tok = tokenizer()
    vocab = tok.get_vocab_size()
    image_token = tok.token_to_id("<image>")
    eos = tok.token_to_id("<|endoftext|>")
    n_patches = (IMAGE_SIZE // PATCH) ** 2

    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                              num_attention_heads=2, image_size=IMAGE_SIZE, patch_size=PATCH,
                              projection_dim=16, hidden_act="quick_gelu", layer_norm_eps=1e-5)
    text_kw = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, vocab_size=vocab,
                   max_position_embeddings=512, original_max_position_embeddings=512,
                   rms_norm_eps=1e-5, rope_theta=10000.0, bos_token_id=1, eos_token_id=eos,
                   pad_token_id=eos, tie_word_embeddings=False, sliding_window=SLIDING_WINDOW,
                   hidden_act="silu")
    text = Phi3Config(**text_kw)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=image_token,
                         projector_hidden_act="gelu", vision_feature_select_strategy="default",
                         vision_feature_layer=-2, image_seq_length=n_patches)
    model = LlavaForConditionalGeneration(config).eval()
    randomise(model, SEED)
    sd = model.state_dict()
    assert any(k.endswith("self_attn.qkv_proj.weight") for k in sd), sorted(sd)[:8]

    # --- llava-hf layout
    hf = os.path.join(out_dir, "hf")
    model.save_pretrained(hf, safe_serialization=True)
    save_file(f16(sd), os.path.join(hf, "model.safetensors"), metadata={"format": "pt"})
    tok.save(os.path.join(hf, "tokenizer.json"))
    proc = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE},
                                 crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                 image_mean=MEAN, image_std=STD, do_convert_rgb=True)
    proc.save_pretrained(hf)
    for f in os.listdir(hf):
        if f not in {"config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"}:
            os.remove(os.path.join(hf, f))
    with open(os.path.join(hf, "config.json")) as f:
        assert json.load(f)["text_config"]["model_type"] == "phi3"

    # --- original layout (LLaVA-pp LlavaPhiForCausalLM), tower inside the checkpoint
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
        elif k.startswith("model.vision_tower."):
            osd["model.vision_tower.vision_tower.vision_model." + k[len("model.vision_tower."):]] = v
        elif k == "lm_head.weight":
            osd[k] = v
    save_file(f16(osd), os.path.join(orig, "model.safetensors"), metadata={"format": "pt"})
    ocfg = {"architectures": ["LlavaPhiForCausalLM"], "model_type": "llava_phi",
            **{k: v for k, v in text_kw.items()}, "torch_dtype": "float16",
            "mm_hidden_size": vision.hidden_size, "mm_projector_type": "mlp2x_gelu",
            "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch",
            "mm_vision_tower": "openai/clip-vit-large-patch14-336", "image_aspect_ratio": "pad",
            "mm_use_im_start_end": False, "mm_use_im_patch_token": False}
    with open(os.path.join(orig, "config.json"), "w") as f:
        json.dump(ocfg, f, indent=2)
    tok.save(os.path.join(orig, "tokenizer.json"))
    vt = os.path.join(orig, "vision_tower")
    os.makedirs(vt)
    vcfg = vision.to_dict()
    vcfg["architectures"] = ["CLIPVisionModel"]
    with open(os.path.join(vt, "config.json"), "w") as f:
        json.dump(vcfg, f, indent=2)
    proc.save_pretrained(vt)

    # --- inputs: the two prompt images are padded, not resized; the third is padded and resized
    ims = images()
    background = tuple(int(x * 255) for x in MEAN)
    all_pixels = torch.cat([proc(expand2square(im, background), return_tensors="pt")["pixel_values"]
                            for im in ims])
    pixel_values = all_pixels[:2]
    chunks = prompt_ids(tok, PROMPT)
    assert len(chunks) == 3
    input_ids = chunks[0] + [image_token] * n_patches + chunks[1] + [image_token] * n_patches + chunks[2]
    n = len(input_ids)
    assert n > SLIDING_WINDOW + 8, (n, "the sliding window must bite")
    a = len(chunks[0])
    b = a + n_patches + len(chunks[1])
    positions = [a - 1, a + n_patches - 1, a + n_patches + 1, b + n_patches - 1, (b + n_patches + n) // 2, n - 1]
    ids_t = torch.tensor([input_ids])
    base = run(model, ids_t, pixel_values, positions)

    # --- LongRoPE: the same weights, Phi-3-128k-style rope scaling (a 4x longer configured
    # context than the original one, so the attention factor is not 1).
    half = text.hidden_size // text.num_attention_heads // 2
    g = torch.Generator().manual_seed(SEED + 2)
    short = [round(1.0 + float(x), 4) for x in torch.rand(half, generator=g)]
    long = [round(1.0 + 4 * float(x), 4) for x in torch.rand(half, generator=g)]
    lr_kw = dict(text_kw, max_position_embeddings=2048, original_max_position_embeddings=512,
                 rope_scaling={"type": "longrope", "short_factor": short, "long_factor": long})
    lr_config = LlavaConfig(vision_config=vision, text_config=Phi3Config(**lr_kw),
                            image_token_id=image_token, projector_hidden_act="gelu",
                            vision_feature_select_strategy="default", vision_feature_layer=-2,
                            image_seq_length=n_patches)
    lr_model = LlavaForConditionalGeneration(lr_config).eval()
    lr_model.load_state_dict(sd)
    with torch.no_grad():
        out = lr_model(input_ids=ids_t, pixel_values=pixel_values)
    lr_logits = {str(p): [round(float(x), 6) for x in out.logits[0, p]] for p in positions}
    with open(os.path.join(hf, "config.json")) as f:
        hcfg = json.load(f)
    hcfg["text_config"].update({"max_position_embeddings": 2048, "original_max_position_embeddings": 512,
                                "rope_scaling": {"type": "longrope", "short_factor": short,
                                                 "long_factor": long}})
    hcfg["text_config"].pop("rope_parameters", None)
    with open(os.path.join(out_dir, "longrope.json"), "w") as f:
        json.dump(hcfg, f, indent=2)

    golden = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "prompt": PROMPT,
        "system": SYSTEM,
        "image_tokens": n_patches,
        "prompt_chunks": chunks,
        "sequence_length": n,
        "sliding_window": SLIDING_WINDOW,
        "positions": positions,
        "end_token": tok.token_to_id("<|end|>"),
        "pixel_values": [[round(float(x), 6) for x in pv.flatten()] for pv in all_pixels],
        "base": {"prompt_logits": base[0], "greedy_tokens": base[1], "step_logits": base[2],
                 "greedy_text": tok.decode(base[1])},
        "longrope": {"prompt_logits": lr_logits},
    }
    with open(os.path.join(out_dir, "golden.json"), "w") as f:
        json.dump(golden, f)
    for d, _, fs in os.walk(out_dir):
        for f in fs:
            os.chmod(os.path.join(d, f), 0o644)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out_dir) for f in fs)
    print(f"wrote {out_dir}: {total} bytes; {n} prompt tokens; greedy {base[1]}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "crates/rap-llm-local/tests/fixtures/llava_phi3_tiny")
