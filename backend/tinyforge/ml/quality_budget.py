"""The quality budget of quantized exports: one small dataclass the CLI, the export and the
platform's settings share without importing the export machinery."""

from __future__ import annotations

from dataclasses import dataclass

from tinyforge.errors import TinyforgeError


@dataclass(frozen=True)
class QualityBudget:
    """How far a quantized export may move from PyTorch fp32 and still be offered as good. An int8
    export that misses it fails (OnnxExportError with the numbers), unless kept anyway, and then
    its report, card and README say so loudly. Defaults: the 2% held-out loss ceiling of
    docs/benchmarks.md, and a quarter of the greedily generated tokens agreeing with PyTorch before
    their first divergence (a coarse measure over 4 prompts: SmolLM2-135M's good int8 model scored
    +0.56% and 48%; signed weights on a CPU without VNNI, the failure this catches, +80% and 1.6%;
    docs/export.md)."""

    max_loss_increase: float = 0.02  # held-out loss may rise by this share of PyTorch's (0.02 = 2%)
    min_token_agreement: float = 0.25  # share of generated tokens before the first divergence from PyTorch

    def __post_init__(self) -> None:
        # Below 0 the quantized model must beat PyTorch's loss: only a test wants that, to force a miss.
        if not self.max_loss_increase > -1:
            raise TinyforgeError(f"max loss increase must be above -1, not {self.max_loss_increase}")
        if not 0 <= self.min_token_agreement <= 1:
            raise TinyforgeError(f"min token agreement must be between 0 and 1, not {self.min_token_agreement}")

    def misses(self, numbers: dict) -> list[str]:
        """What the numbers of a quantized model miss, in words (empty when within the budget)."""
        misses = []
        if numbers["heldout_loss_change"] > self.max_loss_increase:
            misses.append(f"held-out loss {100 * numbers['heldout_loss_change']:+.2f}% against PyTorch fp32 "
                          f"(budget {100 * self.max_loss_increase:+g}%)")
        if numbers["token_agreement"] < self.min_token_agreement:
            misses.append(f"{100 * numbers['token_agreement']:.1f}% of generated tokens agree with PyTorch "
                          f"(budget {100 * self.min_token_agreement:g}%)")
        return misses
