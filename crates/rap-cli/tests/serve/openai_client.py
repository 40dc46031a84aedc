"""Talks to `rap serve` with the official `openai` client: models, a chat with a photo (not
streamed, then streamed), and a bad image. Prints one JSON object for the Rust test to check.

usage: openai_client.py BASE_URL API_KEY PHOTO
"""
import base64
import json
import sys

import openai
from openai import OpenAI

base, key, photo = sys.argv[1:4]
client = OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=300)
with open(photo, "rb") as f:
    url = "data:image/jpeg;base64," + base64.b64encode(f.read()).decode()
messages = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": [
        {"type": "text", "text": "What is in this photo?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]},
]
out = {}
models = client.models.list()
out["models"] = [m.id for m in models.data]
model = models.data[0].id

raw = client.chat.completions.with_raw_response.create(
    model=model, messages=messages, max_tokens=24, temperature=0)
resp = raw.parse()
out["plain"] = {
    "header": raw.headers.get("x-rap-concepts"),
    "answer": resp.choices[0].message.content,
    "finish": resp.choices[0].finish_reason,
    "rap": (resp.model_extra or {}).get("rap"),
    "usage": resp.usage.total_tokens if resp.usage else None,
}

text, rap, finish, chunks = "", None, None, 0
for chunk in client.chat.completions.create(
        model=model, messages=messages, max_tokens=24, temperature=0, stream=True):
    chunks += 1
    extra = chunk.model_extra or {}
    if extra.get("rap") is not None:
        rap = extra["rap"]
    if chunk.choices:
        if chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
out["stream"] = {"answer": text, "rap": rap, "finish": finish, "chunks": chunks}

try:
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": [
        {"type": "text", "text": "hi"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}}]}])
    out["bad_image"] = "accepted"
except openai.BadRequestError as e:
    out["bad_image"] = {"status": e.status_code, "body": e.body}

try:
    OpenAI(base_url=base + "/v1", api_key="rap_000000000000_wrong", max_retries=0).models.list()
    out["wrong_key"] = "accepted"
except openai.AuthenticationError as e:
    out["wrong_key"] = {"status": e.status_code}

print(json.dumps(out))
