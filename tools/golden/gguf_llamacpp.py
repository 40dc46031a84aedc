#!/usr/bin/env python3
"""Golden fixtures for crates/rap-llm-local, computed by llama.cpp (llama-cpp-python).

Run on a developer machine, never in CI:

    python3 -m pip install llama-cpp-python   # compiles llama.cpp
    python3 tools/golden/gguf_llamacpp.py MODEL.gguf crates/rap-llm-local/tests/golden/NAME.json

It writes one JSON file with
  - the sha256 of the model file,
  - `tokenizer_cases`: token ids of a set of strings (`Llama.tokenize(text, add_bos=False,
    special=True)` with `vocab_only=True`),
  - `prompt` / `prompt_ids` / `greedy_ids`: a ChatML prompt, its tokens (with BOS when the model
    asks for it), and the first 32 tokens of greedy decoding (argmax of the logits, computed
    token by token with the KV cache), stopping early at an end-of-generation token,
  - `greedy_margins` / `greedy_top2`: the gap between the best and second-best logit at each
    step and those two tokens, which tell whether a divergence sits on a near tie.
If `transformers` is installed, it also tokenizes the cases with
`AutoTokenizer.from_pretrained(dir, gguf_file=...)` and prints any disagreement with llama.cpp.
"""

import hashlib
import json
import os
import sys

import numpy as np
import llama_cpp
from llama_cpp import Llama

N_GREEDY = 32

TOKENIZER_CASES = [
    "",
    "Hello world",
    "Hello, world! How are you today?",
    "I'm sure you'll see we've done it; they'd say 'yes' and WE'LL agree.",
    "The year 2024 had 366 days; pi is 3.14159 and 1,000,000 is a million.",
    "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e, \u00fcber na\u00efve fa\u00e7ade",
    "\u65e5\u672c\u8a9e\u306e\u6587\u7ae0\u3068\u4e2d\u6587\u53e5\u5b50",
    "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u0438 \u0440\u0443\u0441\u0441\u043a\u0438\u0439 \u0442\u0435\u043a\u0441\u0442",
    "Emoji: \U0001f980\U0001f44d\U0001f3fd \U0001f468\u200d\U0001f469\u200d\U0001f467 \u2764\ufe0f",
    'fn main() {\n    println!("{}", 42);\n}\n',
    "def f(x):\n\tif x:\n\t\treturn [i**2 for i in range(x)]  # squares\n",
    "a    b\t\tc\n\n\nd   ",
    "   leading spaces and trailing   ",
    "\n\n",
    "<|im_start|>user\nIs <bo> in this image?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|><|im_end|><|endoftext|>",
    "Name: <bo>, Info: <bo> is a well-groomed Shiba Inu.",
    "https://example.org/path?q=1&r=two#frag",
    "x" * 50,
]

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
USER = "Write a short story about a dog named Bo who finds a red ball in the park."
PROMPT = (
    f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
    f"<|im_start|>user\n{USER}<|im_end|>\n"
    "<|im_start|>assistant\n"
)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    model_path, out_path = sys.argv[1], sys.argv[2]
    vocab = Llama(model_path=model_path, vocab_only=True, verbose=False)
    cases = [
        {"text": t, "ids": vocab.tokenize(t.encode("utf-8"), add_bos=False, special=True)}
        for t in TOKENIZER_CASES
    ]

    try:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(
            os.path.dirname(os.path.abspath(model_path)), gguf_file=os.path.basename(model_path)
        )
        for c in cases:
            theirs = hf.encode(c["text"], add_special_tokens=False)
            if theirs != c["ids"]:
                print(f"transformers differs on {c['text']!r}: {theirs} vs llama.cpp {c['ids']}")
    except Exception as e:  # transformers is optional
        print(f"(transformers cross-check skipped: {e})")

    llm = Llama(model_path=model_path, n_ctx=2048, n_batch=512, n_threads=2, logits_all=True, verbose=False
    )
    prompt_ids = llm.tokenize(PROMPT.encode("utf-8"), add_bos=True, special=True)
    llm.reset()
    llm.eval(prompt_ids)
    greedy, margins, top2 = [], [], []
    for _ in range(N_GREEDY):
        logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        order = np.argsort(-logits)
        tok = int(order[0])
        margins.append(float(logits[order[0]] - logits[order[1]]))
        top2.append([int(order[0]), int(order[1])])
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, tok):
            break
        greedy.append(tok)
        llm.eval([tok])

    out = {
        "generator": "tools/golden/gguf_llamacpp.py (llama-cpp-python)",
        "model_file": os.path.basename(model_path),
        "model_sha256": sha256(model_path),
        "tokenizer_cases": cases,
        "prompt": PROMPT,
        "prompt_ids": prompt_ids,
        "greedy_ids": greedy,
        "greedy_text": llm.detokenize(greedy).decode("utf-8", errors="replace"),
        "greedy_margins": margins,
        "greedy_top2": top2,
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {out_path}: {len(greedy)} greedy tokens: {out['greedy_text']!r}")


if __name__ == "__main__":
    main()
