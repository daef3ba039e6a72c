"""`tinyforge serve`: the inference service over model folders, under uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from tinyforge.errors import TinyforgeError

DEFAULT_KEY_VARIABLE = "TINYFORGE_API_KEY"
METRICS_TOKEN_VARIABLE = "TINYFORGE_METRICS_TOKEN"
METRICS_ADDRESS_VARIABLE = "TINYFORGE_METRICS_ADDRESS"
DEFAULT_MAX_CONTEXT = 4096  # the runtime takes the smaller of this and the model's own context


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve model folders behind an OpenAI-compatible API",
        description="Serve model folders (full models or LoRA adapters) behind an OpenAI-compatible API "
                    "with batching. LoRA adapters of the same base share its weights in memory.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", action="append", required=True, metavar="NAME=DIR",
                        help="a model folder to serve, named NAME in the API (repeat for more models); "
                             "DIR alone names it after the folder")
    parser.add_argument("--api-key-env", default=DEFAULT_KEY_VARIABLE, metavar="VARIABLE",
                        help="environment variable holding the API key clients must send as a bearer token; "
                             "when it is unset the server runs without a key and says so")
    add_server_arguments(parser)
    parser.set_defaults(func=serve)


def add_server_arguments(parser) -> None:
    """Where to listen and how to run the models: shared by `tinyforge serve` and the platform's
    inference service."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16", "int8"],
                        help="weight precision. auto: bfloat16 on CUDA and on CPUs with AVX512-BF16 or AMX; "
                             "elsewhere int8 weight matrices where the CPU has the kernels (VNNI or AMX-INT8), else float16 "
                             "(F16C and AVX2: one-row steps read float16, batches float32 copies), either only "
                             "when the model keeps the quality budget (checked at load), else float32")
    parser.add_argument("--max-batch", type=int, default=16, help="requests generated together per model")
    parser.add_argument("--max-waiting", type=int, default=64, help="requests queued per model before answering 429")
    parser.add_argument("--max-context", type=int, default=None,
                        help="positions per request (prompt + completion); default: the model's own context, "
                             "at most 4096 (each position costs KV cache memory for every batch slot)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a request may take, queued or running")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch, and for each llama-server of the llama.cpp runtime (default: all cores)")
    parser.add_argument("--metrics-address", metavar="HOST:PORT", default=os.environ.get(METRICS_ADDRESS_VARIABLE) or None,
                        help="also serve the Prometheus metrics, without a token, on this internal address "
                             f"(default: ${METRICS_ADDRESS_VARIABLE}); on the service's own port, /metrics answers "
                             f"only the bearer token in ${METRICS_TOKEN_VARIABLE}, and nothing when it is unset")


def serve(args) -> int:
    from tinyforge.serving.registry import FolderRegistry, parse_model_argument

    models: dict[str, object] = {}
    for value in args.model:
        name, path = parse_model_argument(value)
        if name in models:
            raise TinyforgeError(f"--model {value!r}: the name {name!r} is used twice")
        models[name] = path
    check_server_arguments(args)
    authenticator = authenticator_from_environment(args.api_key_env, explicit=args.api_key_env != DEFAULT_KEY_VARIABLE)
    run_server(FolderRegistry(models), authenticator, args, what=", ".join(models),
               metrics_token=os.environ.get(METRICS_TOKEN_VARIABLE, "").strip() or None)
    return 0


def check_server_arguments(args) -> None:
    for option in ("max_batch", "max_waiting", "port"):
        if getattr(args, option) < 1:
            raise TinyforgeError(f"--{option.replace('_', '-')} must be at least 1")
    if args.max_context is not None and args.max_context < 2:
        raise TinyforgeError("--max-context must be at least 2")
    if args.metrics_address:
        metrics_listen_address(args.metrics_address)


def metrics_listen_address(value: str) -> tuple[str, int]:
    """(host, port) of a --metrics-address such as 127.0.0.1:9101, 0.0.0.0:9101 or [::1]:9101."""
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise TinyforgeError(f"--metrics-address {value!r} ({METRICS_ADDRESS_VARIABLE}): expected HOST:PORT, such as "
                             "127.0.0.1:9101 (this machine only) or 0.0.0.0:9101 (a port you do not publish)")
    return host, int(port)


def run_server(registry, authenticator, args, what: str, prepare=None, metrics_token: str | None = None,
               answer_log=None, budget=None) -> None:
    """The inference app over `registry` and `authenticator` (and `answer_log`, which keeps the
    answers: serving/answers.py), under uvicorn until stopped.
    `prepare(app)`, when given, is called with the app before it serves. /metrics answers on the
    app's port only to `metrics_token`, and to anyone on args.metrics_address (an internal address).
    `budget` (tinyforge.ml.quality_budget.QualityBudget) is what int8 weights must keep; default its defaults."""
    import torch
    import uvicorn
    from prometheus_client import start_http_server

    from tinyforge.serving.app import ServerSettings, create_app
    from tinyforge.serving.pool import RuntimeOptions
    from tinyforge.serving.torch_runtime import pick_device, pick_dtype

    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = ServerSettings(runtime=RuntimeOptions(
        device=args.device, dtype=args.dtype, max_slots=args.max_batch, max_waiting=args.max_waiting,
        max_context=args.max_context or DEFAULT_MAX_CONTEXT, request_timeout=args.timeout,
        **({"budget": budget} if budget else {}),
    ), metrics_token=metrics_token)
    # A missing CUDA device or a dtype this CPU cannot run is a usage error, said before anything loads.
    pick_dtype(args.dtype, pick_device(args.device))
    app = create_app(registry, authenticator, settings, answer_log)
    if prepare is not None:
        prepare(app)
    if args.metrics_address:
        host, port = metrics_listen_address(args.metrics_address)
        try:
            # prometheus_client's own server, in a thread: it serves the metrics and nothing else.
            start_http_server(port, addr=host, registry=app.state.service.metrics.registry)
        except OSError as exc:
            raise TinyforgeError(f"--metrics-address {args.metrics_address}: cannot listen there ({exc.strerror})") from exc
        print(f"metrics on http://{args.metrics_address}/metrics", file=sys.stderr, flush=True)
    print(f"serving {what} on http://{args.host}:{args.port}/v1", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


def authenticator_from_environment(variable: str, explicit: bool = False):
    """APIKeyAuthenticator from the variable, or OpenAccess with a loud warning when it is unset.

    A variable the user named explicitly must be set: they asked for a key."""
    from tinyforge.serving.auth import APIKeyAuthenticator, OpenAccess

    key = os.environ.get(variable, "").strip()
    if key:
        return APIKeyAuthenticator(key)
    if explicit:
        raise TinyforgeError(f"--api-key-env {variable}: the environment variable {variable} is not set")
    banner = "!" * 78
    print(f"{banner}\nWARNING: {variable} is not set: this server has NO API KEY and anyone who can reach "
          f"its port can use the models.\nSet {variable}=<a long random string> to require "
          f"'Authorization: Bearer <key>'.\n{banner}", file=sys.stderr, flush=True)
    return OpenAccess()
