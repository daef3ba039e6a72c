"""The loaded models: one runtime and engine per set of weights, LoRA deployments on shared bases.

A full model folder gets its own runtime. An adapter folder is loaded onto the runtime of the
base its adapter_config.json names (loading that base once, for all of its adapters), so ten
fine-tunes of one base hold one copy of the base plus ten small adapters. An adapter that cannot
be applied per request (see AdapterNotShareable) is merged into a private copy of its base, and
the log says so.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tinyforge.errors import TinyforgeError
from tinyforge.ml.quality_budget import QualityBudget
from tinyforge.serving.engine import Engine
from tinyforge.serving.registry import ModelRegistry, ModelSpec
from tinyforge.serving.runtime import BASE_ADAPTER, AdapterNotShareable, Runtime

log = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "adapter_model.safetensors",
                "model.onnx")


@dataclass(frozen=True)
class RuntimeOptions:
    device: str = "auto"
    dtype: str = "auto"  # a model's precision unless its spec names one (serving.precision)
    budget: QualityBudget = QualityBudget()  # what int8 must keep, checked at load
    max_slots: int = 16
    max_context: int | None = None
    max_waiting: int = 64
    request_timeout: float = 300.0


@dataclass
class ServedModel:
    spec: ModelSpec
    state: str = "loading"  # loading, ready, failed
    error: str = ""
    engine: Engine | None = None
    engine_key: str = ""
    adapter_id: int = BASE_ADAPTER
    tokenizer: object = None
    stop_token_ids: frozenset[int] = frozenset()
    memory: dict[str, int] = field(default_factory=dict)
    shared_base: str = ""  # base folder when this is an adapter on shared weights
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass
class _RuntimeEntry:
    runtime: Runtime
    engine: Engine
    users: set[str] = field(default_factory=set)


class ModelPool:
    def __init__(self, registry: ModelRegistry, options: RuntimeOptions, metrics):
        self.registry = registry
        self.options = options
        self.metrics = metrics
        self.models: dict[str, ServedModel] = {}
        self._runtimes: dict[str, _RuntimeEntry] = {}
        self._lock = threading.Lock()  # guards self.models for readers on the event loop
        self.synced_once = threading.Event()

    def get(self, name: str) -> ServedModel | None:
        return self.models.get(name)

    # --- reconciling with the registry (background thread) ---------------------------------

    def sync(self, specs: list[ModelSpec]) -> None:
        wanted = {spec.name: spec for spec in specs}
        for name in list(self.models):
            served = self.models[name]
            spec = wanted.get(name)
            if spec is None:
                self._unload(name, "the model was removed from the registry")
                with self._lock:
                    del self.models[name]
                self._set_state(name, "unloaded", "")
            elif spec != served.spec:
                self._unload(name, "the model is being reloaded with new files")
                with self._lock:
                    del self.models[name]
            elif served.state == "ready" and not _has_files(spec.path):
                message = f"the files of model {name!r} at {spec.path} were deleted; redeploy it"
                self._unload(name, message)
                served.state, served.error = "failed", message
                self._set_state(name, "failed", message)
        for name, spec in wanted.items():
            if name not in self.models:
                self._load(spec)
        self.synced_once.set()

    def _load(self, spec: ModelSpec) -> None:
        served = ServedModel(spec=spec)
        with self._lock:
            self.models[spec.name] = served
        self._set_state(spec.name, "loading", "")
        try:
            self._load_into(served)
        except Exception as exc:  # a bad folder must not stop the other models
            if not isinstance(exc, TinyforgeError):
                log.exception("loading model %s from %s failed", spec.name, spec.path)
            served.state, served.error = "failed", f"cannot load model {spec.name!r} from {spec.path}: {exc}"
            self._set_state(spec.name, "failed", served.error)
            self._release(served)
            for key in [k for k, entry in self._runtimes.items() if not entry.users]:
                self._drop_unused(key)
            return
        choice = served.engine.runtime.precision_choice if served.engine else None
        if choice is not None:
            log.log(logging.WARNING if choice.fell_back else logging.INFO, "model %s serves in %s: %s",
                    spec.name, choice.precision, choice.reason)
            try:
                self.registry.model_precision_chosen(spec.name, choice)
            except Exception:
                log.exception("registry could not record the precision of model %s", spec.name)
        served.state = "ready"
        self._set_state(spec.name, "ready", "")
        for part, value in served.memory.items():
            self.metrics.memory.labels(spec.name, part).set(value)
        log.info("model %s ready (%s): %s", spec.name, spec.path,
                 ", ".join(f"{part} {value / 2**20:.1f} MiB" for part, value in served.memory.items()))

    def _load_into(self, served: ServedModel) -> None:
        from tinyforge.ml.models import resolve_base_model

        path = Path(served.spec.path)
        if not path.is_dir():
            raise TinyforgeError(f"{path} does not exist")
        from tinyforge.serving.llama_cpp_runtime import is_llama_cpp_folder

        if is_llama_cpp_folder(path):
            self._load_llama_cpp(served, path)
            return
        if not _has_files(path):
            raise TinyforgeError(f"{path} has no model weights ({' or '.join(WEIGHT_FILES)})")
        adapter_config = path / "adapter_config.json"
        if adapter_config.is_file():
            base_ref = json.loads(adapter_config.read_text()).get("base_model_name_or_path")
            if not base_ref:
                raise TinyforgeError(f"{adapter_config} has no base_model_name_or_path")
            base = resolve_base_model(base_ref)
            served.tokenizer = _load_tokenizer(path if (path / "tokenizer_config.json").is_file() else base)
            precision = served.spec.precision or self.options.dtype
            base_key = _runtime_key(str(base), precision)
            entry = self._runtime_for(base_key, lambda: self._runtime_from_folder(base, precision))
            if len(served.tokenizer) > entry.runtime.info.vocab_size:
                reason = f"its tokenizer has {len(served.tokenizer)} tokens, the base model {entry.runtime.info.vocab_size}"
                self._drop_unused(base_key)
                self._load_merged(served, path, reason)
            else:
                try:
                    served.adapter_id = entry.engine.call(lambda runtime: runtime.add_adapter(path))
                except AdapterNotShareable as exc:
                    self._drop_unused(base_key)
                    self._load_merged(served, path, str(exc))
                else:
                    self._attach(served, base_key, entry)
                    served.shared_base = str(base)
                    served.memory = {"adapter": entry.runtime.adapter_bytes(served.adapter_id),
                                     "shared_base": entry.runtime.info.weights_bytes,
                                     "kv_cache": entry.runtime.info.kv_cache_bytes}
        else:
            served.tokenizer = _load_tokenizer(path)
            precision = served.spec.precision or self.options.dtype
            key = _runtime_key(str(path.resolve()), precision)
            entry = self._runtime_for(key, lambda: self._runtime_from_folder(path, precision))
            self._attach(served, key, entry)
            served.memory = {"weights": entry.runtime.info.weights_bytes, "kv_cache": entry.runtime.info.kv_cache_bytes}
        served.stop_token_ids = _stop_token_ids(path, served.tokenizer, served.shared_base)
        if not served.tokenizer.chat_template:
            log.warning("model %s has no chat template: /v1/chat/completions will refuse it", served.spec.name)

    def _load_llama_cpp(self, served: ServedModel, path: Path) -> None:
        """A GGUF served by llama-server: one process per GGUF (tinyforge.serving.llama_cpp_runtime),
        shared by the deployments of that model and, each as an adapter in it, of its LoRAs."""
        from tinyforge.serving.llama_cpp_runtime import LlamaCppEngine, LlamaCppFolder

        folder = LlamaCppFolder.read(path)
        served.tokenizer = _load_tokenizer(path)
        key = f"llama.cpp:{folder.model}"
        o = self.options
        entry = self._runtimes.get(key)
        if entry is None:
            import torch

            # --threads (torch's count) holds for llama-server too: one setting for the CPU a runtime may use.
            engine = LlamaCppEngine(folder.model, name=key, metrics=self.metrics, gguf_type=folder.gguf_type,
                                    max_slots=o.max_slots, max_context=o.max_context, max_waiting=o.max_waiting,
                                    request_timeout=o.request_timeout, first_adapter=folder.lora,
                                    threads=torch.get_num_threads())
            entry = self._runtimes[key] = _RuntimeEntry(engine.runtime, engine)
            served.adapter_id = engine.first_adapter_id
        elif folder.lora is not None:
            served.adapter_id = entry.engine.add_adapter(folder.lora)
        self._attach(served, key, entry)
        info = entry.runtime.info
        if folder.lora is not None:
            served.shared_base = str(folder.model)
            served.memory = {"adapter": folder.lora.stat().st_size, "shared_base": info.weights_bytes,
                             "kv_cache": info.kv_cache_bytes}
        else:
            served.memory = {"weights": info.weights_bytes, "kv_cache": info.kv_cache_bytes}
        served.stop_token_ids = _stop_token_ids(path, served.tokenizer)

    def _load_merged(self, served: ServedModel, path: Path, reason: str) -> None:
        from tinyforge.ml.models import load_model_folder

        log.warning("model %s: adapter cannot share its base (%s); serving it merged on its own copy",
                    served.spec.name, reason)
        precision = served.spec.precision or self.options.dtype
        key = _runtime_key(f"merged:{path.resolve()}", precision)
        entry = self._runtime_for(key, lambda: self._build_runtime(load_model_folder(path)[0].merge_and_unload(),
                                                                   served.tokenizer, precision))
        self._attach(served, key, entry)
        served.memory = {"weights": entry.runtime.info.weights_bytes, "kv_cache": entry.runtime.info.kv_cache_bytes}

    def _runtime_from_folder(self, folder: Path, precision: str) -> Runtime:
        """ONNX Runtime for an ONNX export (tinyforge export --format onnx), PyTorch otherwise."""
        from tinyforge.serving.onnx_runtime import OnnxRuntime, is_onnx_folder

        if is_onnx_folder(folder):
            return OnnxRuntime.from_folder(folder, max_slots=self.options.max_slots, max_context=self.options.max_context)
        # Through ml.models: models load in threads, and transformers' lazy imports are not thread-safe.
        # Merged: the base of an adapter may itself be an adapter (a DPO run from an earlier LoRA
        # run). Loaded as a plain model, transformers attached it as peft layers under the shared
        # adapters, and the deployment answered neither as the earlier run nor as the new one.
        from tinyforge.ml.models import load_merged_model

        return self._build_runtime(load_merged_model(folder), _load_tokenizer(folder), precision)

    def _build_runtime(self, model, tokenizer, precision: str) -> Runtime:
        from tinyforge.serving.precision import load_torch_runtime

        o = self.options
        # The tokenizer renders the int8 and float16 quality-check prompts (serving.precision.quality_against_float32).
        return load_torch_runtime(model, tokenizer, precision=precision, budget=o.budget,
                                  max_slots=o.max_slots, max_context=o.max_context, device=o.device)

    def _runtime_for(self, key: str, build) -> _RuntimeEntry:
        """The runtime and engine of `key`, built by `build` on the engine's own thread (see
        tinyforge.serving.engine: tensor work on one thread per runtime keeps the CPU kernels fast)."""
        entry = self._runtimes.get(key)
        if entry is None:
            engine = Engine(build, name=key, metrics=self.metrics, max_waiting=self.options.max_waiting,
                            request_timeout=self.options.request_timeout)
            entry = self._runtimes[key] = _RuntimeEntry(engine.runtime, engine)
        return entry

    def _attach(self, served: ServedModel, key: str, entry: _RuntimeEntry) -> None:
        entry.users.add(served.spec.name)
        served.engine, served.engine_key = entry.engine, key

    def _unload(self, name: str, message: str) -> None:
        served = self.models[name]
        served.state, served.error = "failed", message  # new requests are refused from now on
        self._release(served, message)
        for part in list(served.memory):
            with contextlib.suppress(KeyError):
                self.metrics.memory.remove(name, part)
        served.memory = {}

    def _release(self, served: ServedModel, message: str = "the model was unloaded") -> None:
        entry = self._runtimes.get(served.engine_key)
        if entry is None:
            return
        entry.users.discard(served.spec.name)
        adapter_id = served.adapter_id
        done = threading.Event()
        entry.engine.remove_model(served.spec.name, message,
                                  then=lambda: (entry.runtime.remove_adapter(adapter_id) if adapter_id else None, done.set()))
        done.wait(timeout=60)
        served.engine = None
        self._drop_unused(served.engine_key)

    def _drop_unused(self, key: str) -> None:
        entry = self._runtimes.get(key)
        if entry is not None and not entry.users:
            del self._runtimes[key]
            entry.engine.stop()
            entry.runtime.close()

    def _set_state(self, name: str, state: str, detail: str) -> None:
        if state == "unloaded":
            with contextlib.suppress(KeyError):
                self.metrics.ready.remove(name)
        else:
            self.metrics.ready.labels(name).set(1 if state == "ready" else 0)
        try:
            self.registry.model_state_changed(name, state, detail)
        except Exception:
            log.exception("registry could not record model %s as %s", name, state)

    def close(self) -> None:
        for key in list(self._runtimes):
            entry = self._runtimes.pop(key)
            entry.engine.stop()
            entry.runtime.close()


def _runtime_key(folder: str, precision: str) -> str:
    """One runtime per set of weights and precision: deployments of one base in different
    precisions hold one copy each, and batch with the others of theirs."""
    return f"{folder}@{precision}"


def _has_files(path: Path) -> bool:
    from tinyforge.serving.llama_cpp_runtime import LlamaCppFolder, is_llama_cpp_folder

    if is_llama_cpp_folder(path):  # its GGUFs are where its manifest says
        try:
            LlamaCppFolder.read(path)
        except TinyforgeError:
            return False
        return True
    return any((Path(path) / name).is_file() for name in WEIGHT_FILES)


def _load_tokenizer(folder: Path):
    from tinyforge.ml.models import load_tokenizer

    return load_tokenizer(folder)


def _stop_token_ids(folder: Path, tokenizer, base: str = "") -> frozenset[int]:
    """End-of-sequence ids from generation_config.json (the model's own list, else its base's)
    and the tokenizer."""
    ids = set()
    config = folder / "generation_config.json"
    if not config.is_file() and base:
        config = Path(base) / "generation_config.json"
    if config.is_file():
        eos = json.loads(config.read_text()).get("eos_token_id")
        ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return frozenset(ids)
