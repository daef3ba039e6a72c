"""What this machine computes natively: the one capability probe that training, serving, export and
the benchmarks ask.

Why a probe of our own: PyTorch 2.13 tells its ATen dispatch level (`get_cpu_capability`) and whether
oneDNN can run bfloat16 at all, but not whether the CPU has bfloat16 matrix instructions
(AVX512-BF16, AMX-BF16). Without them bfloat16 is emulated: slower than float32 on AVX-512, and on
an AVX2-only CPU oneDNN refuses its bfloat16 kernels outright. So the CPU's flags are read from the
operating system and capped the way the libraries cap themselves (oneDNN's `ONEDNN_MAX_CPU_ISA`,
ATen's `ATEN_CPU_CAPABILITY`): a process started with `ONEDNN_MAX_CPU_ISA=AVX2
ATEN_CPU_CAPABILITY=avx2` answers as an AVX2-only CPU would, which is how the test suite covers the
AVX2 path on a bigger machine.

Pure Python: torch is imported only when a question needs it.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

from tinyforge.errors import TinyforgeError

# The flags (Linux /proc/cpuinfo names) that decide which kernels run.
RELEVANT_FLAGS = (
    "f16c", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16",
    "avx512_fp16", "avx_vnni", "avx_ne_convert", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16",
)

# oneDNN's ONEDNN_MAX_CPU_ISA levels, lowest first, with the flags each level adds: a cap at a level
# keeps oneDNN off the flags of every level above it.
ONEDNN_ISA_LEVELS = (
    ("SSE41", ()),
    ("AVX", ()),
    ("AVX2", ("avx2", "fma")),
    ("AVX2_VNNI", ("avx_vnni",)),
    ("AVX2_VNNI_2", ("avx_ne_convert",)),
    ("AVX512_CORE", ("avx512f", "avx512bw", "avx512vl", "avx512dq")),
    ("AVX512_CORE_VNNI", ("avx512_vnni",)),
    ("AVX512_CORE_BF16", ("avx512_bf16",)),
    ("AVX10_1_512", ("avx512_fp16",)),
    ("AVX10_1_512_AMX", ("amx_tile", "amx_int8", "amx_bf16")),
    ("AVX10_1_512_AMX_FP16", ("amx_fp16",)),
)
_ONEDNN_ALIASES = {"AVX512_CORE_FP16": "AVX10_1_512", "AVX512_CORE_AMX": "AVX10_1_512_AMX",
                   "AVX512_CORE_AMX_FP16": "AVX10_1_512_AMX_FP16"}
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# One fused int8 dot product: what torch._int_mm needs to reach oneDNN (CpuCapabilities.int8_missing).
INT8_DOT_PRODUCT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class CpuCapabilities:
    model: str
    flags: tuple[str, ...]  # the relevant flags the CPU reports
    usable: tuple[str, ...]  # those the libraries may use in this process (after the caps)
    onednn_max_isa: str | None  # ONEDNN_MAX_CPU_ISA, when set
    torch_capability: str | None  # ATen's kernels: "AVX512", "AVX2", "DEFAULT" (None: no torch)
    onednn_bf16: bool  # oneDNN runs bfloat16 kernels here, natively or emulated on AVX-512

    @property
    def native_bf16(self) -> bool:
        return self.bf16_missing is None

    @property
    def bf16_missing(self) -> str | None:
        """Why bfloat16 matrices are not native here, naming the missing CPU feature; None if they are."""
        if not any(flag in self.flags for flag in NATIVE_BF16_FLAGS):
            return (f"this CPU ({self.model}) has no bfloat16 matrix instructions "
                    "(AVX512-BF16 or AMX-BF16)")
        if not any(flag in self.usable for flag in NATIVE_BF16_FLAGS):
            return f"oneDNN is capped below AVX512-BF16 (ONEDNN_MAX_CPU_ISA={self.onednn_max_isa})"
        if self.torch_capability is not None and self.torch_capability != "AVX512":
            return f"PyTorch's kernels are capped at {self.torch_capability} (ATEN_CPU_CAPABILITY), below AVX-512"
        if not self.onednn_bf16:
            return "this PyTorch build's oneDNN has no bfloat16 kernels"
        return None

    @property
    def fp16_missing(self) -> str | None:
        """Why float16 weights cannot serve fast here, naming the missing feature; None when they can.
        The serving engine reads them for one-row steps through ATen's float16 matrix-vector kernel,
        which converts with F16C and adds in float32 in its AVX2 and AVX-512 versions, and multiplies
        batches by float32 copies of the same values (serving.torch_runtime._HalfMatrix); no oneDNN
        float16 kernel is needed, so AVX512-FP16 is not. Without AVX2 ATen's kernel is scalar."""
        if "f16c" not in self.flags or "avx2" not in self.flags:
            return (f"this CPU ({self.model}) has no F16C and AVX2, which PyTorch's vectorised float16 "
                    "matrix-vector kernel needs")
        if self.torch_capability == "DEFAULT":
            return "PyTorch's kernels are capped below AVX2 (ATEN_CPU_CAPABILITY=default)"
        return None

    @property
    def int8_missing(self) -> str | None:
        """Why the serving engine's int8 matrices (torch._int_mm, oneDNN's s8 x s8 GEMM) cannot run
        fast here, naming the missing feature; None when they can. Below AVX2 oneDNN has no
        vectorised int8 kernel and int8 would be slower than float32.

        Without VNNI or AMX in the CPU itself, PyTorch does not hand torch._int_mm to oneDNN: it
        runs a plain loop. Measured on a 2-core AVX2-only AMD EPYC, one of SmolLM2-135M's MLP
        matrices took 0.35 ms for one row and 3.2 ms for eight, against 0.10 and 0.17 ms in
        prepacked float32; served, int8 gave 28.8 tok/s at 8 clients against float32's 116. (With
        oneDNN capped at AVX2 on a VNNI CPU, the routing still sees VNNI and oneDNN's AVX2 kernels
        are fast, which is why an emulated AVX2 run had not shown this.)"""
        if "avx2" not in self.flags:
            return f"this CPU ({self.model}) has no AVX2, which oneDNN's int8 matrix kernels need"
        if not INT8_DOT_PRODUCT_FLAGS & set(self.flags):
            return (f"this CPU ({self.model}) has no VNNI or AMX-INT8, and PyTorch's int8 matrix product runs a "
                    "plain loop without them (3 to 20 times slower than float32)")
        if "avx2" not in self.usable:
            return f"oneDNN is capped below AVX2 (ONEDNN_MAX_CPU_ISA={self.onednn_max_isa})"
        if self.torch_capability == "DEFAULT":
            return "PyTorch's kernels are capped below AVX2 (ATEN_CPU_CAPABILITY=default)"
        return None

    @property
    def int8_full_range(self) -> bool:
        """Whether oneDNN multiplies int8 exactly over the whole signed range here. With VNNI or AMX
        it does; without (AVX2, AVX-512 before Cascade Lake) it goes through VPMADDUBSW, whose
        16-bit pair sums saturate once weights exceed 64 in magnitude (measured: torch._int_mm
        with all-127 operands was off by 9.2M under ONEDNN_MAX_CPU_ISA=AVX2, exact with |w| <= 64)."""
        return bool(INT8_DOT_PRODUCT_FLAGS & set(self.usable))

    @property
    def int8_dot_product(self) -> str:
        """The instructions ONNX Runtime's int8 matrix kernels use here: AMX, AVX512-VNNI,
        AVX-VNNI (one fused u8 x s8 dot product), or the AVX2 path without VNNI."""
        for flag, name in (("amx_int8", "AMX"), ("avx512_vnni", "AVX512-VNNI"), ("avx_vnni", "AVX-VNNI")):
            if flag in self.flags:
                return name
        return "AVX2 (no VNNI)" if "avx2" in self.flags else "SSE"

    def summary(self) -> str:
        """One line for logs, reports and benchmark headers."""
        caps = []
        if self.onednn_max_isa:
            caps.append(f"ONEDNN_MAX_CPU_ISA={self.onednn_max_isa}")
        if self.torch_capability:
            caps.append(f"torch kernels {self.torch_capability}")
        return (f"{self.model}; flags: {' '.join(self.flags) or 'no AVX2'}"
                f"{'; ' + ', '.join(caps) if caps else ''}; native bf16: {'yes' if self.native_bf16 else 'no'}; "
                f"int8: {self.int8_dot_product}")

    def to_dict(self) -> dict:
        return {**asdict(self), "native_bf16": self.native_bf16, "int8_dot_product": self.int8_dot_product}


def _read_cpuinfo() -> tuple[str, set[str]]:
    """(model name, flags) from /proc/cpuinfo; elsewhere the platform's processor name and no flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine() or "unknown CPU", set()
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model or platform.machine() or "unknown CPU", flags


def onednn_isa_cap() -> str | None:
    """The oneDNN ISA cap from the environment (ONEDNN_MAX_CPU_ISA, or its old name DNNL_MAX_CPU_ISA)."""
    value = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    value = _ONEDNN_ALIASES.get(value, value)
    return None if value in ("", "ALL", "DEFAULT") else value


def _usable(flags: set[str], cap: str | None) -> set[str]:
    levels = [name for name, _ in ONEDNN_ISA_LEVELS]
    if cap not in levels:
        return set(flags)  # oneDNN ignores a value it does not know
    above = {flag for name, added in ONEDNN_ISA_LEVELS[levels.index(cap) + 1:] for flag in added}
    return flags - above


def _torch_answers() -> tuple[str | None, bool]:
    try:
        import torch
    except ImportError:
        return None, False
    capability = torch.backends.cpu.get_cpu_capability()
    try:
        onednn_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        onednn_bf16 = False
    return capability, onednn_bf16


@functools.cache
def cpu() -> CpuCapabilities:
    """This process's CPU, as the libraries will use it (cached: the caps are read at start-up)."""
    model, flags = _read_cpuinfo()
    cap = onednn_isa_cap()
    relevant = [flag for flag in RELEVANT_FLAGS if flag in flags]
    usable = _usable(set(relevant), cap)
    capability, onednn_bf16 = _torch_answers()
    return CpuCapabilities(model=model, flags=tuple(relevant), usable=tuple(f for f in relevant if f in usable),
                           onednn_max_isa=cap, torch_capability=capability, onednn_bf16=onednn_bf16)


def machine_summary() -> str:
    """The first line of every benchmark's output: figures hold for this kind of CPU, under this load."""
    load = f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "unknown"
    return f"CPU: {cpu().summary()}; {os.cpu_count()} cores; load average {load}"


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pick_device(requested: str = "auto", option: str = "device") -> str:
    """"cuda" (or "cuda:N") or "cpu": auto takes CUDA when present; asking for CUDA without it is an error."""
    if requested == "auto":
        return "cuda" if cuda_available() else "cpu"
    if requested.startswith("cuda"):
        if not cuda_available():
            raise TinyforgeError(f"{option} {requested}: no CUDA device is available on this machine")
        return requested
    if requested != "cpu":
        raise TinyforgeError(f"{option} {requested!r}: choose auto, cpu, cuda or cuda:N")
    return requested


def half_missing(device: str, dtype: str = "bfloat16") -> str | None:
    """Why `dtype` (bfloat16 or float16) cannot run at full speed on `device`, naming the missing
    feature; None when it can (bfloat16 natively; float16 see CpuCapabilities.fp16_missing)."""
    if device.startswith("cuda"):
        import torch

        if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
            return "this GPU does not support bfloat16"
        return None
    return cpu().bf16_missing if dtype == "bfloat16" else cpu().fp16_missing


def native_bf16(device: str) -> bool:
    """Whether `auto` may choose bfloat16 on `device`: only where it is native, and so faster."""
    return half_missing(device, "bfloat16") is None


def require_native(device: str, dtype: str, option: str, instead: str) -> None:
    """Refuse an explicit half-precision choice where it is not native, saying what is missing:
    emulated, it is slower than float32 (and oneDNN refuses bfloat16 below AVX-512)."""
    missing = half_missing(device, dtype)
    if missing:
        raise TinyforgeError(f"{option}: {dtype} needs native support on {device}, but {missing}; use {instead}")
