#!/usr/bin/env python3
"""llama.cpp's tokens/s on a GGUF file, measured as `rap bench generate` measures rap's local
backend (crates/rap-cli/src/commands/bench/generate.rs):

    python3 tools/golden/bench_llamacpp.py MODEL.gguf [PROMPT_TOKENS] [GEN_TOKENS] [RUNS] [THREADS]

Prompt processing: eval of the whole prompt (batch 512). Generation: one token at a time after a
one-token prompt, greedy, GEN_TOKENS tokens. Median of RUNS; THREADS defaults to all cores.
Prints one JSON object with the same keys as `rap bench generate`. Needs llama-cpp-python
(`pip install llama-cpp-python numpy`).
"""

import json
import os
import sys
import time

import numpy as np
import llama_cpp
from llama_cpp import Llama


def main():
    path = sys.argv[1]
    n_prompt = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    n_gen = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    runs = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else os.cpu_count()
    t = time.perf_counter()
    llm = Llama(model_path=path, n_ctx=2048, n_batch=512, n_threads=threads,
                n_threads_batch=threads, verbose=False)
    load_ms = (time.perf_counter() - t) * 1000
    text = "The quick brown fox jumps over the lazy dog. " * n_prompt
    prompt = llm.tokenize(text.encode(), add_bos=False, special=True)[:n_prompt]
    llm.reset(); llm.eval(prompt[:8])  # warm-up
    pp, tg = [], []
    for _ in range(runs):
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt)
        ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        int(np.argmax(np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),))))
        pp.append(len(prompt) / (time.perf_counter() - t))

        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt[:1])
        for _ in range(n_gen):
            ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
            tok = int(np.argmax(np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),))))
            llm.eval([tok])
        tg.append(n_gen / (time.perf_counter() - t))
    print(json.dumps({
        "implementation": f"llama.cpp (llama-cpp-python {llama_cpp.__version__})",
        "file": path,
        "threads": threads,
        "load_ms": load_ms,
        "prompt_tokens": len(prompt),
        "prompt_tokens_per_s": sorted(pp)[len(pp) // 2],
        "generated_tokens": n_gen,
        "generated_tokens_per_s": sorted(tg)[len(tg) // 2],
        "runs": runs,
        "samples": {"prompt_tokens_per_s": pp, "generated_tokens_per_s": tg},
    }, indent=2))


if __name__ == "__main__":
    main()
