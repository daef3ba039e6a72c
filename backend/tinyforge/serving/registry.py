"""Where the served models come from.

The server polls its registry every `refresh_seconds` and makes the loaded set match the answer:
it loads models that appeared, unloads those that disappeared, reloads those whose revision
changed, and marks failed any whose files are gone, without a restart and without touching the
others. The platform plugs in a registry backed by its Deployment table; a standalone server or
an exported bundle uses FolderRegistry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from tinyforge.errors import TinyforgeError


@dataclass(frozen=True)
class ModelSpec:
    """One model to serve.

    name: what clients put in "model". path: a model folder (full weights, or a LoRA adapter whose
    adapter_config.json names its base). revision: anything that changes when the files behind
    the name change (a checkpoint id, a timestamp); a new revision reloads the model.
    """

    name: str
    path: Path
    revision: str = ""
    owned_by: str = "tinyforge"
    precision: str = ""  # auto, float32, bfloat16, float16, int8 (serving.precision); "": the server's --dtype


class ModelRegistry(ABC):
    refresh_seconds: float = 2.0
    # True when the server exists to serve every model listed (a fixed set of folders): one that
    # fails keeps /readyz at 503. The platform's deployments come and go, and one broken
    # deployment must not take the service out of rotation for the others.
    every_model_required: bool = False

    @abstractmethod
    def list_models(self) -> list[ModelSpec]:
        """The models that should be served now. Called from a background thread; an exception
        keeps the current set and is logged."""

    def model_state_changed(self, name: str, state: str, detail: str = "") -> None:
        """Told when a model becomes "loading", "ready", "failed" (detail says why) or "unloaded",
        so a platform can record it on the deployment."""

    def model_precision_chosen(self, name: str, choice) -> None:
        """Told, before "ready", which precision serves the model and why
        (tinyforge.serving.precision.PrecisionChoice), int8's quality numbers and any fallback."""


class FolderRegistry(ModelRegistry):
    """A fixed set of model folders, named on the command line."""

    every_model_required = True

    def __init__(self, models: dict[str, Path], refresh_seconds: float = 2.0):
        self.models = {name: Path(path) for name, path in models.items()}
        self.refresh_seconds = refresh_seconds

    def list_models(self) -> list[ModelSpec]:
        return [ModelSpec(name=name, path=path) for name, path in self.models.items()]


def parse_model_argument(value: str) -> tuple[str, Path]:
    """`NAME=DIR` or just `DIR` (named after the folder)."""
    name, sep, folder = value.partition("=")
    if not sep:
        name, folder = Path(value).name, value
    path = Path(folder).expanduser()
    if not name or not folder:
        raise TinyforgeError(f"--model {value!r}: expected NAME=DIR or DIR")
    if not path.is_dir():
        raise TinyforgeError(f"--model {value!r}: {path} is not a folder")
    markers = ("config.json", "adapter_config.json", "onnx_config.json", "llama_cpp.json")
    if not any((path / marker).is_file() for marker in markers):
        raise TinyforgeError(f"--model {value!r}: {path} is not a model folder "
                             "(no config.json, adapter_config.json, onnx_config.json or llama_cpp.json)")
    return name, path.resolve()
