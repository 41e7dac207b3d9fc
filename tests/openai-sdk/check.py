"""Calls Scribe's OpenAI-compatible route with the official OpenAI Python SDK.

Usage: check.py BASE_URL API_KEY AUDIO_FILE TOO_LARGE_FILE

Prints one JSON object: for each response format, the type the SDK returned
and what it held; then, for a bad key and for a too-large file, the SDK's
exception class and status. tests/tests/openai_sdk.rs checks it.
"""
import json
import sys

import openai

base_url, api_key, audio_path, too_large_path = sys.argv[1:5]
client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0, timeout=60)
out = {"sdk_version": openai.__version__}

for fmt in ["json", "text", "srt", "vtt", "verbose_json"]:
    with open(audio_path, "rb") as audio:
        result = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format=fmt, language="en")
    entry = {"type": type(result).__name__}
    if isinstance(result, str):
        entry["body"] = result
    else:
        entry["text"] = result.text
        if fmt == "verbose_json":
            entry["language"] = result.language
            entry["duration"] = result.duration
            entry["segments"] = [{"start": s.start, "end": s.end, "text": s.text} for s in (result.segments or [])]
    out[fmt] = entry


def failure(call):
    try:
        call()
    except openai.APIStatusError as error:
        return {"class": type(error).__name__, "status": error.status_code, "message": str(error)}
    return {"class": None}


def with_bad_key():
    bad = openai.OpenAI(base_url=f"{base_url}/v1", api_key="sk-scribe-not-a-key", max_retries=0)
    with open(audio_path, "rb") as audio:
        bad.audio.transcriptions.create(model="whisper-1", file=audio)


def too_large():
    with open(too_large_path, "rb") as audio:
        client.audio.transcriptions.create(model="whisper-1", file=audio)


out["bad_key"] = failure(with_bad_key)
out["too_large"] = failure(too_large)
print(json.dumps(out))
