"""Evaluation throughput: our batched evaluation against a plain transformers `generate` loop, and
the judge's bounded pool against a sequential loop, in one run on one machine.

1. Answering. SmolLM2-135M-Instruct (the offline preset) and a LoRA adapter of it answer the same
   eval rows (the shipped general set, repeated to --rows), greedy, at most --max-tokens tokens:
   - ours: tinyforge.evaluation.runner.evaluate with both folders as targets: every row of a chunk
     submitted at once to the serving engine, the adapter on the base's shared weights, so both
     targets' rows share continuous batches; exact match and ROUGE-L scored as they come.
   - peer: what an evaluation script usually does: for each target, load it with transformers
     (the adapter through PEFT) and call `model.generate` row after row.
   The peer answers --peer-rows rows per target (the same first rows; a loop's rate is a rate),
   ours all --rows. Reported: rows/s (row x target answers per second) and the ratio; floor 5x.
   Both are greedy with the same chat template and token budget, so their answers are compared
   too (the share that match exactly).
2. Judging. --judge-prompts pointwise prompts sent to one judge server (`tinyforge serve` on the
   same base model, in a subprocess) through ChatEndpoint, sequentially (a pool of one) and
   through the bounded pool (--judge-concurrency): requests/s and the ratio; floor 3x.

    .venv/bin/python bench/eval_throughput.py                  # 200 rows, 64 tokens
    .venv/bin/python bench/eval_throughput.py --rows 48 --peer-rows 8 --judge-prompts 16   # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "backend")]

ANSWER_FLOOR, JUDGE_FLOOR = 5.0, 3.0


def make_adapter(base: Path, out: Path, seed: int = 0) -> Path:
    """A LoRA adapter of the base (random, non-zero B), saved as training saves one."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (out / "adapter_config.json").is_file():
        return out
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base))
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    peft_model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(out))
    config = json.loads((out / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(base)
    (out / "adapter_config.json").write_text(json.dumps(config))
    return out


def ours(rows, targets: dict[str, Path], max_tokens: int) -> tuple[float, dict[str, list[str]]]:
    from tinyforge.evaluation.runner import EvalConfig, Target, evaluate
    from tinyforge.evaluation.scorers import Scorer

    answers: dict[str, dict[int, str]] = {name: {} for name in targets}

    def keep(results, pairs):
        for r in results:
            answers[r.target][r.index] = r.answer.text

    config = EvalConfig(scorers=(Scorer("exact_match"), Scorer("rouge_l")), max_tokens=max_tokens)
    loaded = []

    def progress(message: str) -> None:
        if message.startswith("loaded"):
            loaded.append(time.perf_counter())

    evaluate(rows, [Target(name, folder=folder) for name, folder in targets.items()], config, on_chunk=keep,
             on_progress=progress)
    # From the models loaded to the last row scored: loading is not counted, as for the peer.
    elapsed = time.perf_counter() - loaded[0]
    return elapsed, {name: [by_index[i] for i in range(len(rows))] for name, by_index in answers.items()}


def peer(rows, targets: dict[str, Path], max_tokens: int) -> tuple[float, dict[str, list[str]]]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    answers: dict[str, list[str]] = {}
    elapsed = 0.0
    for name, folder in targets.items():
        adapter = (folder / "adapter_config.json").is_file()
        base = Path(json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]) if adapter else folder
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModelForCausalLM.from_pretrained(str(base))
        if adapter:
            model = PeftModel.from_pretrained(model, str(folder))
        model.eval()
        answers[name] = []
        start = time.perf_counter()  # loading is not counted: only the answering loop
        with torch.no_grad():
            for row in rows:
                text = tokenizer.apply_chat_template(row.messages(), tokenize=False, add_generation_prompt=True)
                encoded = tokenizer(text, add_special_tokens=False, return_tensors="pt")
                output = model.generate(**encoded, max_new_tokens=max_tokens, do_sample=False,
                                        pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
                answers[name].append(tokenizer.decode(output[0, encoded["input_ids"].shape[1]:],
                                                      skip_special_tokens=True).strip())
        elapsed += time.perf_counter() - start
        del model
    return elapsed, answers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_judge(base: Path, threads: int | None) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "TINYFORGE_API_KEY"}
    command = [sys.executable, "-m", "tinyforge.cli", "serve", "--model", f"judge={base}", "--port", str(port)]
    if threads:
        command += ["--threads", str(threads)]
    process = subprocess.Popen(command, env={**env, "PYTHONPATH": str(ROOT / "backend")},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the judge server (tinyforge serve) exited")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process, f"http://127.0.0.1:{port}/v1"
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit("the judge server did not get ready")


def judge_rate(url: str, rows, concurrency: int, max_tokens: int) -> float:
    from tinyforge.evaluation.endpoints import ChatEndpoint, Endpoint
    from tinyforge.evaluation.judges import Judge, JudgeConfig

    async def go() -> float:
        judge = Judge(ChatEndpoint(Endpoint(url, "judge", concurrency=concurrency)),
                      JudgeConfig(mode="pointwise", max_tokens=max_tokens))
        await judge.pointwise(rows[0], rows[0].reference or "")  # warm-up
        start = time.perf_counter()
        await asyncio.gather(*(judge.pointwise(row, row.reference or "") for row in rows))
        elapsed = time.perf_counter() - start
        await judge.endpoint.close()
        return len(rows) / elapsed

    return asyncio.run(go())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--peer-rows", type=int, default=20, help="rows per target the generate loop answers")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--judge-prompts", type=int, default=48)
    parser.add_argument("--judge-concurrency", type=int, default=None,
                        help="judge requests in flight (default: the product's, as evaluations use it)")
    parser.add_argument("--judge-max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tinyforge-eval-bench")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    import torch
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    from tinyforge.evaluation.sets import general_rows
    from tinyforge.hardware import machine_summary
    from tinyforge.ml.models import resolve_base_model

    print(machine_summary(), flush=True)

    base = resolve_base_model("smollm2-135m-instruct")
    args.work.mkdir(parents=True, exist_ok=True)
    adapter = make_adapter(base, args.work / "lora")
    targets = {"smollm2": base, "lora": adapter}
    general = general_rows()
    rows = [general[i % len(general)] for i in range(args.rows)]
    peer_rows = rows[: args.peer_rows]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; "
          f"{args.rows} rows x 2 targets (ours), {args.peer_rows} x 2 (peer), <= {args.max_tokens} tokens", flush=True)

    ours_s, ours_answers = ours(rows, targets, args.max_tokens)
    ours_rate = 2 * len(rows) / ours_s
    print(f"ours (engine batching):       {ours_rate:7.2f} rows/s  ({2 * len(rows)} answers in {ours_s:.1f} s)", flush=True)
    peer_s, peer_answers = peer(peer_rows, targets, args.max_tokens)
    peer_rate = 2 * len(peer_rows) / peer_s
    print(f"peer (transformers generate): {peer_rate:7.2f} rows/s  ({2 * len(peer_rows)} answers in {peer_s:.1f} s)",
          flush=True)
    same = sum(ours_answers[t][i] == peer_answers[t][i] for t in targets for i in range(len(peer_rows)))
    answer_ratio = ours_rate / peer_rate
    print(f"answering ratio: {answer_ratio:.2f}x (floor {ANSWER_FLOOR}x); identical answers {same}/{2 * len(peer_rows)}",
          flush=True)

    from tinyforge.evaluation.endpoints import DEFAULT_CONCURRENCY

    if args.judge_concurrency is None:
        args.judge_concurrency = DEFAULT_CONCURRENCY
    process, url = start_judge(base, args.threads)
    try:
        prompts = rows[: args.judge_prompts]
        sequential = judge_rate(url, prompts, 1, args.judge_max_tokens)
        pooled = judge_rate(url, prompts, args.judge_concurrency, args.judge_max_tokens)
    finally:
        process.terminate()
        process.wait(timeout=60)
    judge_ratio = pooled / sequential
    print(f"judge sequential: {sequential:6.2f} requests/s; pool of {args.judge_concurrency}: {pooled:6.2f} requests/s; "
          f"ratio {judge_ratio:.2f}x (floor {JUDGE_FLOOR}x)", flush=True)
    figures = {"machine": machine_summary(), "ours_rows_per_s": ours_rate, "peer_rows_per_s": peer_rate, "answer_ratio": answer_ratio,
               "identical_answers": same, "compared_answers": 2 * len(peer_rows),
               "judge_sequential_per_s": sequential, "judge_pool_per_s": pooled, "judge_ratio": judge_ratio,
               "args": {k: str(v) for k, v in vars(args).items()}}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    ok = answer_ratio >= ANSWER_FLOOR and judge_ratio >= JUDGE_FLOOR
    print("PASS" if ok else "BELOW THE FLOOR")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
