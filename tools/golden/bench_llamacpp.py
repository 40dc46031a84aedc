#!/usr/bin/env python3
"""llama.cpp's tokens/s on a GGUF file, measured like crates/rap-llm-local/examples/bench_gguf.rs.

    python3 tools/golden/bench_llamacpp.py MODEL.gguf [PROMPT_TOKENS] [GEN_TOKENS] [RUNS]

Prompt processing: eval of the whole prompt (batch 512). Generation: one token at a time after a
one-token prompt, greedy, n_gen tokens. Median of RUNS; threads = all cores.
"""

import os
import sys
import time

import numpy as np
import llama_cpp
from llama_cpp import Llama


def main():
    path = sys.argv[1]
    n_prompt = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    n_gen = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    runs = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    threads = os.cpu_count()
    llm = Llama(model_path=path, n_ctx=2048, n_batch=512, n_threads=threads,
                n_threads_batch=threads, verbose=False)
    text = "The quick brown fox jumps over the lazy dog. " * n_prompt
    prompt = llm.tokenize(text.encode(), add_bos=False, special=True)[:n_prompt]
    llm.reset(); llm.eval(prompt[:8])  # warm-up
    pp, tg = [], []
    for _ in range(runs):
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt)
        pp.append(len(prompt) / (time.perf_counter() - t))

        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt[:1])
        for _ in range(n_gen):
            ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
            tok = int(np.argmax(np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),))))
            llm.eval([tok])
        tg.append(n_gen / (time.perf_counter() - t))
    print(f"llama.cpp: prompt {len(prompt)} tokens: {sorted(pp)[len(pp)//2]:.1f} tok/s; "
          f"generation {n_gen} tokens: {sorted(tg)[len(tg)//2]:.1f} tok/s "
          f"(median of {runs}, {threads} threads)")


if __name__ == "__main__":
    main()
