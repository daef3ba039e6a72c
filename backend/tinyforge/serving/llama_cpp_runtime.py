"""The llama.cpp runtime: GGUF models served by a supervised `llama-server` per base model.

A served folder of this runtime (written by `write_llama_cpp_folder`, which the deploy job calls)
holds `llama_cpp.json`, the model's own tokenizer with its chat template and its
generation_config.json. The manifest names the GGUF that llama-server loads and, for a LoRA
deployment, the GGUF LoRA applied on it; both are paths relative to the folder, because the GGUFs
are conversions cached beside the run (and a base's beside the other bases), shared by every
deployment that uses them.

Requests keep the API's contract whatever the runtime: the prompt is tokenized here, with the
model's chat template exactly as for the PyTorch runtime, and sent to llama-server's native
/completion endpoint as token ids, so both runtimes see the same ids; the answer streams back and
becomes the same TextDelta / Finished / Failed events the engine emits, with the same metrics
(time to first token, tokens, running and waiting requests), the same bounded queue (429) and the
same per-request timeout.

One `LlamaCppEngine` per base GGUF: deployments of one base share one llama-server process, each
LoRA deployment one adapter in it (`--lora` per adapter, loaded at start without being applied,
then chosen per request with /completion's `lora` field). llama-server cannot load an adapter
into a running process, so a new adapter starts a new process with the longer list; requests go
to it as soon as it answers, and the old one finishes the answers it has started before it stops.
A supervisor thread restarts a process that dies or stops answering /health, with backoff; the
engine stops its process when the last deployment on it goes, which returns its memory.

Pure Python, no Django.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tinyforge.errors import TinyforgeError
from tinyforge.serving.engine import Failed, Finished, Generation, QueueFull, SamplingParams, TextDelta
from tinyforge.serving.precision import PrecisionChoice
from tinyforge.serving.runtime import BASE_ADAPTER, RuntimeInfo

log = logging.getLogger(__name__)

MANIFEST = "llama_cpp.json"
GGUF_TYPES = ("f16", "q8_0", "q4_k_m")
# The model's own context, capped as the PyTorch runtime caps it (docs/serving.md, --max-context).
DEFAULT_MAX_CONTEXT = 4096
HEALTH_SECONDS = 5.0  # how often the supervisor asks /health
HEALTH_FAILURES = 3  # a live process that fails this many in a row is killed and restarted
RESTART_BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
DRAIN_SECONDS = 300.0  # how long a replaced process may take to finish the answers it started


# --- the served folder ----------------------------------------------------------------------------


def is_llama_cpp_folder(folder: Path) -> bool:
    return (Path(folder) / MANIFEST).is_file()


@dataclass(frozen=True)
class LlamaCppFolder:
    folder: Path
    model: Path  # the GGUF llama-server loads: the model itself, or the base of `lora`
    lora: Path | None  # a GGUF LoRA applied per request on `model`
    gguf_type: str  # f16, q8_0, q4_k_m: what `model` holds

    @classmethod
    def read(cls, folder: Path) -> LlamaCppFolder:
        folder = Path(folder)
        path = folder / MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise TinyforgeError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("model"), str):
            raise TinyforgeError(f"{path}: expected an object with \"model\" (the GGUF to serve)")
        model = (folder / manifest["model"]).resolve()
        lora = (folder / manifest["lora"]).resolve() if manifest.get("lora") else None
        for what, gguf in (("model", model), ("LoRA adapter", lora)):
            if gguf is not None and not gguf.is_file():
                raise TinyforgeError(f"{path}: the {what} GGUF {gguf} does not exist; redeploy to convert it again")
        return cls(folder=folder, model=model, lora=lora, gguf_type=str(manifest.get("gguf_type", "f16")))


def write_llama_cpp_folder(source: Path, target: Path, *, cache: Path, base_cache: Path, gguf_type: str = "f16",
                           merge: bool = False, heldout_data: str | os.PathLike | None = None, budget=None,
                           keep_anyway: bool = False, progress=None) -> dict:
    """Write `target` (empty or missing), the served folder of the model folder `source` for this runtime,
    and return the GGUF's verification report.

    A LoRA adapter in f16 (unless `merge`) becomes a GGUF LoRA on its base converted to f16: the
    adapter is kept in `cache`, the base in `base_cache`/<fingerprint of the base>, so every
    deployment of that base shares one file and one llama-server. Anything else (full weights, a
    merged adapter, q8_0 and q4_k_m) is one merged GGUF of `gguf_type` in `cache`. Conversions are
    verified in llama.cpp against PyTorch by the GGUF export (tinyforge.ml.gguf_export) and reused
    when `cache` already holds them. `keep_anyway` keeps a quantized GGUF that misses `budget` (a
    standalone bundle's choice, with the report's warning; deployments never pass it)."""
    from tinyforge.ml.artifacts import write_atomically
    from tinyforge.ml.export import is_adapter_folder, write_gguf_folder, write_gguf_lora_folder
    from tinyforge.ml.models import resolve_base_model

    say = progress or (lambda message: None)
    if gguf_type not in GGUF_TYPES:
        raise TinyforgeError(f"GGUF type {gguf_type!r}: choose {', '.join(GGUF_TYPES)}")
    source, target, cache = Path(source), Path(target), Path(cache)
    adapter = is_adapter_folder(source)
    base_folder = None
    if adapter:
        base_ref = json.loads((source / "adapter_config.json").read_text()).get("base_model_name_or_path") or ""
        base_folder = resolve_base_model(base_ref)
        if not merge and gguf_type == "f16" and is_adapter_folder(base_folder):
            say("the adapter's base is itself a LoRA adapter (a run fine-tuned from an earlier run); a GGUF LoRA "
                "needs a base of full weights, so this one is served merged, as one GGUF")
            merge = True
    if adapter and not merge and gguf_type == "f16":
        base_gguf = Path(base_cache) / base_fingerprint(base_folder) / "model.gguf"
        if base_gguf.is_file():
            say(f"reusing the f16 GGUF of the base model {base_folder.name} converted earlier")
        else:
            from tinyforge.ml.gguf_export import check_architecture, convert
            from transformers import AutoConfig

            check_architecture(AutoConfig.from_pretrained(base_folder))
            say(f"converting the base model {base_folder.name} to GGUF (f16), once for all its deployments")
            write_atomically(base_gguf.parent, lambda folder: convert(base_folder, folder / "model.gguf"),
                             "the base model's GGUF")
        converted = cache / "lora"
        if (converted / "adapter.gguf").is_file():
            say("reusing the GGUF LoRA converted earlier")
        else:
            write_atomically(converted, lambda folder: write_gguf_lora_folder(
                source, folder, heldout_data=heldout_data, base_gguf=base_gguf, progress=say), "the GGUF LoRA")
        model, lora = base_gguf, converted / "adapter.gguf"
    else:
        converted = cache / gguf_type
        if (converted / "model.gguf").is_file():
            say(f"reusing the {gguf_type} GGUF converted earlier")
        else:
            if adapter:
                say(f"merging the LoRA adapter into its base for a {gguf_type} GGUF")
            write_atomically(converted, lambda folder: write_gguf_folder(
                source, folder, gguf_type=gguf_type, heldout_data=heldout_data, budget=budget,
                keep_anyway=keep_anyway, progress=say),
                f"the {gguf_type} GGUF")
        model, lora = converted / "model.gguf", None
    verification = json.loads((converted / "verification.json").read_text())
    link_llama_cpp_folder(target, model=model, lora=lora, gguf_type=gguf_type, tokenizer_from=source,
                          generation_config_from=[source, base_folder])
    (target / "verification.json").write_text(json.dumps(verification, indent=2))
    return verification


def link_llama_cpp_folder(target: Path, *, model: Path, lora: Path | None, gguf_type: str, tokenizer_from: Path,
                          generation_config_from=()) -> Path:
    """Write the served folder `target` for GGUFs that exist already: the manifest naming them, the
    tokenizer of the Hugging Face folder `tokenizer_from` (the prompt is tokenized here, with the
    model's own chat template, as for the PyTorch runtime) and the first generation_config.json of
    `generation_config_from` (its end-of-sequence ids)."""
    from tinyforge.ml.models import load_tokenizer

    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    load_tokenizer(tokenizer_from).save_pretrained(target)
    for folder in [Path(f) for f in generation_config_from if f is not None]:
        if (folder / "generation_config.json").is_file():
            shutil.copy2(folder / "generation_config.json", target / "generation_config.json")
            break
    manifest = {"model": os.path.relpath(model, target), "lora": os.path.relpath(lora, target) if lora else None,
                "gguf_type": gguf_type}
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return target


def base_fingerprint(base_folder: Path) -> str:
    """Names a base model's conversion: its folder and the size and time of each of its files, so a
    changed base is converted again and never served from a stale GGUF."""
    digest = hashlib.sha256(str(Path(base_folder).resolve()).encode())
    for path in sorted(Path(base_folder).iterdir()):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return f"{Path(base_folder).name[:40]}-{digest.hexdigest()[:16]}"


def _gguf_header(path: Path) -> dict:
    """The key-value metadata of a GGUF (scalars and strings; arrays as their length), checked
    against the file's size: every tensor the header lists must lie inside the file.

    gguf's GGUFReader builds a numpy view for every element of every array, and a tokenizer's
    vocabulary and merges are two arrays of about 49,000 strings each in SmolLM2: 4.5 s for each
    deployment loaded, on a 2-core EPYC, before llama-server was even started. This pass skips the
    arrays by their lengths and reads the same header in milliseconds; the type codes and quantized
    block sizes are the gguf package's."""
    import mmap
    import struct

    from gguf import GGML_QUANT_SIZES, GGUF_MAGIC, GGMLQuantizationType, GGUFValueType

    scalars = {GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H",
               GGUFValueType.INT16: "<h", GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i",
               GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<?", GGUFValueType.UINT64: "<Q",
               GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d"}
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        offset = 0

        def take(fmt: str):
            nonlocal offset
            (value,) = struct.unpack_from(fmt, data, offset)
            offset += struct.calcsize(fmt)
            return value

        def text() -> str:
            nonlocal offset
            length = take("<Q")
            if offset + length > len(data):
                raise ValueError(f"a string of {length} bytes at byte {offset} runs past the end of the file")
            offset += length
            return data[offset - length:offset].decode("utf-8", errors="replace")

        if take("<I") != GGUF_MAGIC:
            raise ValueError("no GGUF magic at the start")
        if (version := take("<I")) not in (2, 3):
            raise ValueError(f"GGUF version {version} (2 and 3 are read)")
        tensors, keys = take("<Q"), take("<Q")
        fields = {}
        for _ in range(keys):
            key, kind = text(), GGUFValueType(take("<I"))
            if kind == GGUFValueType.ARRAY:
                item, count = GGUFValueType(take("<I")), take("<Q")
                if item == GGUFValueType.STRING:
                    for _ in range(count):  # each string: its length, then its bytes
                        length = take("<Q")
                        offset += length
                else:
                    offset += count * struct.calcsize(scalars[item])
                fields[key] = count
            else:
                fields[key] = text() if kind == GGUFValueType.STRING else take(scalars[kind])
        ends = []
        for _ in range(tensors):
            text()
            dims = [take("<Q") for _ in range(take("<I"))]
            block, size = GGML_QUANT_SIZES[GGMLQuantizationType(take("<I"))]
            ends.append(take("<Q") + math.prod(dims) // block * size)
        alignment = int(fields.get("general.alignment", 32))
        start = -(-offset // alignment) * alignment
        if ends and start + max(ends) > len(data):
            raise ValueError(f"its tensors need {start + max(ends)} bytes and the file has {len(data)} (truncated?)")
    return fields


def read_gguf_shape(path: Path) -> dict:
    """What the runtime needs from a GGUF's header: its context and the KV cache's size per token.
    A file that is not a whole GGUF says so here, before llama-server is asked to load it."""
    try:
        fields = _gguf_header(path)
        arch = fields["general.architecture"]
        layers = int(fields[f"{arch}.block_count"])
        heads = int(fields[f"{arch}.attention.head_count"])
        kv_heads = int(fields.get(f"{arch}.attention.head_count_kv", heads))
        embedding = int(fields[f"{arch}.embedding_length"])
        key_length = int(fields.get(f"{arch}.attention.key_length", embedding // heads))
        value_length = int(fields.get(f"{arch}.attention.value_length", embedding // heads))
        context = int(fields.get(f"{arch}.context_length", DEFAULT_MAX_CONTEXT))
        vocab = int(fields.get("tokenizer.ggml.tokens", 0))
    except Exception as exc:  # whatever a broken file makes struct, mmap or a missing key raise
        raise TinyforgeError(f"{path.name} is not a readable GGUF (corrupt or truncated?): "
                             f"{type(exc).__name__}: {exc}") from None
    # llama-server keeps its cache in f16: 2 bytes per value, keys and values, every layer.
    return {"context": context, "vocab": vocab,
            "kv_bytes_per_token": 2 * layers * kv_heads * (key_length + value_length)}


# --- the engine ---------------------------------------------------------------------------------


class _Server:
    """One llama-server process of an engine, with the adapters it was started with."""

    def __init__(self, process, adapters: dict[int, int]):
        self.process = process  # tinyforge.llama_cpp.LlamaServer
        self.adapters = adapters  # our adapter id -> its index in the process's --lora list
        self.inflight = 0


@dataclass(eq=False)
class _Request:
    model: str
    handle: Generation
    submitted_at: float
    deadline: float
    task: asyncio.Task | None = None
    failure: Failed | None = None  # set by remove_model: the answer to give when the task is cancelled
    started: bool = False  # the first token arrived (running, no longer waiting)


class _ProxiedGeneration(Generation):
    """A Generation whose cancel() also stops the request to llama-server at once (closing the
    connection makes llama-server free the slot)."""

    request: _Request | None = None

    def _emit(self, event) -> None:
        # Every event comes from the request's task, on the loop itself: no wake-up through the
        # loop's self-pipe for each token, as Engine's scheduler thread needs.
        self.events.put_nowait(event)

    def cancel(self) -> None:
        super().cancel()
        task = self.request.task if self.request else None
        if task is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(task.cancel)


class LlamaCppEngine:
    """The engine of one base GGUF: its supervised llama-server, its adapters, and the requests to it.

    The same interface as tinyforge.serving.engine.Engine where the API and the pool use it
    (submit, retry_after, running, waiting, remove_model, stop, runtime.info); `runtime` is the
    engine itself, since llama-server owns the weights."""

    def __init__(self, model: Path, *, name: str, metrics, gguf_type: str = "f16", max_slots: int = 16,
                 max_context: int | None = None, max_waiting: int = 64, request_timeout: float = 300.0,
                 threads: int | None = None, first_adapter: Path | None = None):
        """Starts llama-server on `model` (with `first_adapter`, whose id is then `first_adapter_id`)
        and returns once it answers; raises TinyforgeError with the end of its log when it cannot load
        the files."""
        from tinyforge.llama_cpp import find_tool

        find_tool("llama-server")  # LlamaCppMissing names what to install, before anything else
        self.model, self.name, self.metrics = Path(model), name, metrics
        self.max_waiting, self.request_timeout, self.threads = max_waiting, request_timeout, threads
        shape = read_gguf_shape(self.model)
        context = min(max_context or DEFAULT_MAX_CONTEXT, shape["context"] or DEFAULT_MAX_CONTEXT)
        self.info = RuntimeInfo(
            name="llama.cpp", device="cpu", dtype=gguf_type, vocab_size=shape["vocab"], max_context=context,
            max_slots=max_slots, weights_bytes=self.model.stat().st_size,
            kv_cache_bytes=shape["kv_bytes_per_token"] * context * max_slots)
        self.precision_choice = PrecisionChoice(
            gguf_type, gguf_type, f"a GGUF {gguf_type} served by llama.cpp (the precision was chosen when it was "
                                  "converted, and verified against PyTorch then)")
        self.runtime = self  # llama-server holds the weights: the engine answers for them
        self._adapters: dict[int, Path] = {}  # our id -> GGUF LoRA, for the next process started
        self._next_adapter = BASE_ADAPTER + 1
        self._requests: set[_Request] = set()
        self._recent_seconds = collections.deque(maxlen=32)
        self._lock = threading.Lock()  # guards _server, _adapters and _requests across threads
        self._restart_lock = threading.Lock()  # one process start at a time: a restart or a new adapter
        self._draining: set[_Server] = set()  # replaced processes finishing their answers
        self._stopping = threading.Event()
        self.restarts = 0
        self.last_exit = ""  # why the previous process ended, for the error of an answer it cut
        self.restart_error = ""  # why the last try to start it again failed, while it is down
        self.first_adapter_id = BASE_ADAPTER
        if first_adapter is not None:  # the first deployment of a base is a LoRA: one start, not two
            self.first_adapter_id = self._next_adapter
            self._next_adapter += 1
            self._adapters[self.first_adapter_id] = Path(first_adapter)
        self._server: _Server | None = self._start(dict(self._adapters))
        self._supervisor = threading.Thread(target=self._supervise, name=f"llama-server:{name}", daemon=True)
        self._supervisor.start()

    # --- the process ----------------------------------------------------------------------------

    def _start(self, adapters: dict[int, Path]) -> _Server:
        from tinyforge.llama_cpp import LlamaServer

        order = sorted(adapters)
        process = LlamaServer(
            self.model, context=self.info.max_context, parallel=self.info.max_slots, threads=self.threads,
            lora=[adapters[i] for i in order],
            # Adapters are chosen per request; the prompt cache in RAM would add up to 8 GiB per process
            # beyond the KV cache that the memory figures report.
            extra_args=(["--lora-init-without-apply"] if order else []) + [
                "--cache-ram", "0",
                # One HTTP thread per open stream (running or queued): with fewer, llama-server drops
                # connections under load (bench/serve_throughput.py saw it at 16 clients).
                "--threads-http", str(self.info.max_slots + self.max_waiting),
                # Warnings and errors only: the process runs for weeks logging into a temporary file
                # (LlamaServer), which info lines for every request would grow without end; a failed
                # load still logs why.
                "--log-verbosity", "2"])
        process.start()
        log.info("llama-server for %s on port %s (pid %s) with %d adapter(s)", self.model.name, process.port,
                 process.process.pid, len(order))
        return _Server(process, {adapter_id: index for index, adapter_id in enumerate(order)})

    @property
    def pid(self) -> int | None:
        """The running process's id (tests kill it; operators find it in the log)."""
        server = self._server
        return server.process.process.pid if server and server.process.process else None

    def add_adapter(self, path: Path) -> int:
        """Load a GGUF LoRA: a new process with every adapter takes over from the running one (which
        finishes its answers first); returns the adapter's id."""
        with self._lock:
            adapter_id = self._next_adapter
            self._next_adapter += 1
            self._adapters[adapter_id] = Path(path)
            wanted = dict(self._adapters)
        try:
            self._replace(wanted)
        except BaseException:
            # The running process keeps serving the others; later restarts must not retry this file.
            with self._lock:
                self._adapters.pop(adapter_id, None)
            raise
        return adapter_id

    def remove_adapter(self, adapter_id: int) -> None:
        """Stop routing to an adapter. The process keeps it until its next start: restarting every
        other deployment of the base to free a few MiB would cost more than it returns."""
        with self._lock:
            self._adapters.pop(adapter_id, None)

    def adapter_bytes(self, adapter_id: int) -> int:
        path = self._adapters.get(adapter_id)
        return path.stat().st_size if path is not None else 0

    def _replace(self, adapters: dict[int, Path]) -> None:
        with self._restart_lock:
            new = self._start(adapters)
            with self._lock:
                old, self._server = self._server, new
        if old is not None:
            self._draining.add(old)
            threading.Thread(target=self._drain, args=(old,), name=f"llama-server-drain:{self.name}",
                             daemon=True).start()

    def _drain(self, server: _Server) -> None:
        deadline = time.monotonic() + DRAIN_SECONDS
        while server.inflight and time.monotonic() < deadline and not self._stopping.is_set():
            time.sleep(0.1)
        server.process.stop()
        self._draining.discard(server)

    def _supervise(self) -> None:
        """Restart a process that exited or stopped answering /health, with growing pauses between
        failed starts, until the engine stops."""
        import httpx

        failures, next_health = 0, time.monotonic() + HEALTH_SECONDS
        # One client for the engine's life: httpx.get() builds a client, and with it an SSL context
        # that loads the CA store (about 34 ms of CPU) for each plain-HTTP health check.
        with httpx.Client(timeout=5) as client:
            while not self._stopping.wait(0.2):
                server = self._server
                if server is None:
                    continue
                process = server.process.process
                if process.poll() is None:
                    if time.monotonic() < next_health:
                        continue
                    next_health = time.monotonic() + HEALTH_SECONDS
                    try:
                        healthy = client.get(f"{server.process.url}/health").status_code == 200
                    except httpx.TransportError:
                        healthy = False
                    failures = 0 if healthy else failures + 1
                    if failures < HEALTH_FAILURES:
                        continue
                    failures = 0
                    self.last_exit = f"it stopped answering /health (pid {process.pid})"
                    log.error("llama-server for %s (pid %s) stopped answering /health; restarting it",
                              self.model.name, process.pid)
                else:
                    self.last_exit = f"it exited with status {process.returncode} (pid {process.pid})"
                    log.error("llama-server for %s (pid %s) exited with status %s; restarting it. Its log ends:\n%s",
                              self.model.name, process.pid, process.returncode, server.process.log_tail())
                with self._restart_lock:
                    if self._server is not server:
                        continue  # replaced meanwhile by a process with more adapters
                    server.process.stop()
                    started = self._start_with_backoff()
                    if started is None:
                        return
                    with self._lock:
                        self._server = started
                        self.restarts += 1

    def _start_with_backoff(self) -> _Server | None:
        """A new process with the current adapters; None once the engine stops."""
        for attempt in itertools.count():
            if self._stopping.is_set():
                return None
            try:
                started = self._start(dict(self._adapters))
            except Exception as exc:
                self.restart_error = str(exc).splitlines()[0]
                pause = RESTART_BACKOFF[min(attempt, len(RESTART_BACKOFF) - 1)]
                log.error("restarting llama-server for %s failed (%s); next try in %.0f s", self.model.name, exc, pause)
                self._stopping.wait(pause)
            else:
                self.restart_error = ""
                return started
        return None

    def stop(self) -> None:
        """Stop the process (its memory goes back to the system) and fail what it still answers."""
        self._stopping.set()
        self._supervisor.join(timeout=60)
        with self._lock:
            server, self._server = self._server, None
            requests = list(self._requests)
        for request in requests:
            self._fail(request, Failed("model_unloaded", "the server is shutting down"))
        for stopping in [server, *list(self._draining)]:
            if stopping is not None:
                stopping.process.stop()

    def close(self) -> None:
        """The pool's Runtime.close(); stop() has returned the memory."""

    # --- requests, on the event loop -------------------------------------------------------------

    def submit(self, *, model: str, adapter_id: int, tokenizer, prompt_ids: list[int], params: SamplingParams,
               stop_token_ids: frozenset[int], loop: asyncio.AbstractEventLoop) -> Generation:
        handle = _ProxiedGeneration(loop)
        now = time.monotonic()
        request = _Request(model=model, handle=handle, submitted_at=now, deadline=now + self.request_timeout)
        handle.request = request
        with self._lock:
            if self._stopping.is_set() or len(self._requests) >= self.info.max_slots + self.max_waiting:
                raise QueueFull(self.retry_after())
            self._requests.add(request)
        self.metrics.waiting.labels(model).inc()
        request.task = loop.create_task(self._answer(request, adapter_id, prompt_ids, params, stop_token_ids))
        return handle

    def retry_after(self) -> int:
        typical = sum(self._recent_seconds) / len(self._recent_seconds) if self._recent_seconds else 1.0
        backlog = 1 + max(0, len(self._requests) - self.info.max_slots) / max(1, self.info.max_slots)
        return max(1, min(60, math.ceil(typical * backlog)))

    @property
    def running(self) -> int:
        return sum(1 for r in list(self._requests) if r.started)

    @property
    def waiting(self) -> int:
        return sum(1 for r in list(self._requests) if not r.started)

    def remove_model(self, model: str, message: str, then=None) -> None:
        """Fail the model's requests (waiting and running), then call `then`."""
        with self._lock:
            requests = [r for r in self._requests if r.model == model]
        for request in requests:
            self._fail(request, Failed("model_unloaded", message))
        if then is not None:
            then()

    def _fail(self, request: _Request, failure: Failed) -> None:
        request.failure = failure
        task, loop = request.task, request.handle._loop
        if task is not None and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)

    def _session(self):
        """The client of one request's stream from llama-server.

        aiohttp, not httpx: every token crosses this process, and httpx's layers (httpcore, anyio,
        h11 in Python) cost about 0.3 ms of CPU per token, taken from llama-server's two compute
        threads on a 2-core machine (bench/serve_throughput.py measured our llama.cpp runtime at
        0.89x bare llama-server at 8 clients); aiohttp parses HTTP in C on the loop itself. No
        keep-alive: llama-server closes a connection after a stream, and reusing one raced into
        "server disconnected"; a local connect costs ~0.1 ms. No limit: every slot (and every queued
        request) holds one streaming connection."""
        import aiohttp

        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0),
                                     connector=aiohttp.TCPConnector(force_close=True, limit=0))

    async def _server_for(self, request: _Request) -> _Server:
        """The process to ask; while one restarts, wait for it (up to the request's deadline)."""
        while True:
            server = self._server
            if server is not None and server.process.process.poll() is None:
                return server
            if self._stopping.is_set():
                raise _Unavailable("model_unloaded", "the server is shutting down")
            if self.restart_error:  # down for longer than a restart: say so now, not at the timeout
                raise _Unavailable("engine_unavailable", f"llama-server for this model stopped ({self.last_exit}) "
                                                         f"and could not be started again: {self.restart_error}; "
                                                         "it is retried with growing pauses")
            if time.monotonic() > request.deadline:
                raise asyncio.TimeoutError
            await asyncio.sleep(0.05)

    async def _answer(self, request: _Request, adapter_id: int, prompt_ids: list[int], params: SamplingParams,
                      stop_token_ids: frozenset[int]) -> None:
        model, handle = request.model, request.handle
        server = None
        completion_tokens = 0
        try:
            async with asyncio.timeout_at(asyncio.get_running_loop().time() + request.deadline - time.monotonic()):
                server = await self._server_for(request)
                server.inflight += 1
                body = self._body(server, adapter_id, prompt_ids, params)
                finished = None
                async with self._session() as session, \
                        session.post(f"{server.process.url}/completion", json=body) as response:
                    if response.status != 200:
                        detail = (await response.read()).decode("utf-8", "replace")
                        raise _Unavailable("engine_error", f"llama-server answered {response.status}: "
                                                           f"{_error_message(detail)}")
                    async for line in response.content:
                        if not line.startswith(b"data: "):
                            continue
                        chunk = json.loads(line[6:])
                        if "error" in chunk:
                            raise _Unavailable("engine_error", f"llama-server: {_error_message(chunk)}")
                        if not request.started:
                            self._first_token(request, len(prompt_ids))
                        if chunk.get("content"):
                            handle._emit(TextDelta(chunk["content"]))
                        if chunk.get("stop"):
                            finished = chunk
                            break
                        completion_tokens = chunk.get("tokens_predicted", completion_tokens)
                if finished is None:
                    raise _Unavailable("engine_error", self._cut_short_message())
                reason = "length" if finished.get("stop_type") == "limit" else "stop"
                completion_tokens = int(finished.get("tokens_predicted", completion_tokens))
                # llama-server counts the end-of-sequence token it sampled; the engine does not.
                if finished.get("stop_type") == "eos" and completion_tokens:
                    completion_tokens -= 1
                self._recent_seconds.append(time.monotonic() - request.submitted_at)
                handle._emit(Finished(reason, len(prompt_ids), completion_tokens))
        except asyncio.CancelledError:
            if request.failure is not None:
                handle._emit(request.failure)
            # else: the client went away; nobody reads the events
        except TimeoutError:
            self.metrics.rejected.labels(model, "timeout").inc()
            handle._emit(Failed("timeout", f"the request did not finish within {self.request_timeout:g} s"))
        except _Unavailable as exc:
            handle._emit(Failed(exc.code, exc.message))
        except Exception as exc:  # the connection broke: llama-server died mid-answer
            import aiohttp

            if not isinstance(exc, aiohttp.ClientError):
                log.exception("llama.cpp engine %s: request failed", self.name)
            handle._emit(Failed("engine_error", self._cut_short_message(exc)))
        finally:
            if server is not None:
                server.inflight -= 1
            with self._lock:
                self._requests.discard(request)
            if request.started:
                self.metrics.running.labels(model).dec()
            else:
                self.metrics.waiting.labels(model).dec()
            self.metrics.completion_tokens.labels(model).inc(completion_tokens)

    def _first_token(self, request: _Request, prompt_tokens: int) -> None:
        request.started = True
        self.metrics.waiting.labels(request.model).dec()
        self.metrics.running.labels(request.model).inc()
        self.metrics.ttft.labels(request.model).observe(time.monotonic() - request.submitted_at)
        self.metrics.prompt_tokens.labels(request.model).inc(prompt_tokens)

    def _cut_short_message(self, exc: Exception | None = None) -> str:
        why = f" ({type(exc).__name__}: {exc})" if exc is not None and str(exc) else ""
        return (f"llama-server stopped while generating this answer{why}; it is being restarted, "
                "retry the request")

    def _body(self, server: _Server, adapter_id: int, prompt_ids: list[int], params: SamplingParams) -> dict:
        if params.temperature > 0:
            # The engine's sampling: temperature, then nucleus; nothing else on top.
            sampling = {"samplers": ["temperature", "top_p"], "temperature": params.temperature, "top_p": params.top_p,
                        "top_k": 0}
        else:
            # Greedy as top-1: the same token, without the temperature sampler's pass that sets every
            # other logit of the vocabulary to -inf and the softmax over all of them that follows, on
            # llama-server's one sampling thread while its compute threads wait (8 slots of SmolLM2:
            # that chain made 0.85x the tokens/s of llama-server's default one, which cuts to 40
            # candidates first; top-1 makes the same as the default, 1.00x in turn).
            sampling = {"samplers": ["top_k"], "top_k": 1}
        body = {
            "prompt": prompt_ids, "n_predict": params.max_tokens, "stream": True, "cache_prompt": True,
            **sampling, "min_p": 0.0, "stop": list(params.stop), "ignore_eos": params.ignore_eos,
            # Every adapter of the process is listed off (scale 0) unless this request's.
            "lora": [{"id": index, "scale": 1.0 if adapter == adapter_id else 0.0}
                     for adapter, index in server.adapters.items()],
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if params.json_schema is not None:
            body["json_schema"] = json.loads(params.json_schema)  # llama-server turns it into its own grammar
        return body


class _Unavailable(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _error_message(detail) -> str:
    """llama-server's error body ({"error": {"message"}}) in words, or its text."""
    if isinstance(detail, str):
        with contextlib.suppress(json.JSONDecodeError):
            detail = json.loads(detail)
    if isinstance(detail, dict):
        error = detail.get("error", detail)
        return str(error.get("message", error) if isinstance(error, dict) else error)[:500]
    return str(detail)[:500]
