"""Duplicate removal and personal-data scrubbing for examples on their way to the dataset.

Exact duplicates: a 64-bit digest of the normalised text (case and whitespace folded) per kept
example. Near duplicates: MinHash signatures over word 3-grams, banded for locality-sensitive
hashing, with each candidate confirmed by the signatures' estimated Jaccard similarity. The
near-duplicate index costs about 1 KB per kept example; that is why it is on by default for
documents (hundreds to thousands of chunks) and opt-in for large structured sources.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from typing import Any

import numpy as np

_WORD = re.compile(r"\w+")
_MERSENNE = np.uint64((1 << 61) - 1)
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# Phone numbers: optional +country code, optional (area), then digit groups split by space, dot or
# dash. A match needs 7 to 15 digits and is not a date or a dotted IP address.
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){1,4}(?![\w])")
_NOT_PHONE = re.compile(r"^\d{4}-\d{2}-\d{2}$|^\d{1,3}(?:\.\d{1,3}){3}$|^\d{1,2}[./]\d{1,2}[./]\d{2,4}$")
_PROVENANCE_KEYS = {"source", "location", "heading_path", "pages"}


def example_text(example: dict[str, Any]) -> str:
    """What the model sees of an example (metadata excluded)."""
    if "messages" in example:
        return "\n".join(f"{m['role']}: {m['content']}" for m in example["messages"])
    return "\n".join(example.get(k) or "" for k in ("instruction", "input", "output"))


class Deduplicator:
    """Says whether each example repeats an earlier one, exactly or nearly."""

    def __init__(self, exact: bool = True, near: bool = True, threshold: float = 0.85,
                 permutations: int = 64, bands: int = 16):
        if permutations % bands:
            raise ValueError("permutations must be a multiple of bands")
        self.exact, self.near, self.threshold = exact, near, threshold
        self.rows_per_band = permutations // bands
        rng = np.random.default_rng(20240611)  # fixed: the same input always keeps the same rows
        # Multipliers over the whole field, as in datasketch: small ones barely wrap modulo the
        # prime, so every "permutation" would pick nearly the same minimum. The uint64 product
        # overflows on purpose; it is still a fine hash.
        self._a = rng.integers(1, int(_MERSENNE), size=permutations, dtype=np.uint64)
        self._b = rng.integers(0, int(_MERSENNE), size=permutations, dtype=np.uint64)
        self._digests: set[int] = set()
        self._buckets: dict[tuple[int, bytes], int] = {}
        self._signatures: list[np.ndarray] = []
        self.exact_duplicates = 0
        self.near_duplicates = 0

    def is_duplicate(self, text: str) -> bool:
        words = _WORD.findall(text.lower())
        if self.exact:
            digest = int.from_bytes(hashlib.blake2b(" ".join(words).encode(), digest_size=8).digest(), "big")
            if digest in self._digests:
                self.exact_duplicates += 1
                return True
            self._digests.add(digest)
        if self.near and len(words) >= 3:
            signature = self._signature(words)
            rows = self.rows_per_band
            keys = [(band, signature[band * rows:(band + 1) * rows].tobytes()) for band in range(len(signature) // rows)]
            for key in keys:
                other = self._buckets.get(key)
                if other is not None and np.mean(self._signatures[other] == signature) >= self.threshold:
                    self.near_duplicates += 1
                    return True
            index = len(self._signatures)
            self._signatures.append(signature)
            for key in keys:
                self._buckets.setdefault(key, index)
        return False

    def _signature(self, words: list[str]) -> np.ndarray:
        # Hash words once, then combine three neighbours: one crc32 per word, not per 3-gram.
        word_hashes = np.fromiter(map(zlib.crc32, map(str.encode, words)), dtype=np.uint64, count=len(words))
        hashes = np.unique((word_hashes[:-2] * np.uint64(0x9E3779B1) ^ word_hashes[1:-1] * np.uint64(0x85EBCA77)
                            ^ word_hashes[2:]) & np.uint64(0xFFFFFFFF))
        with np.errstate(over="ignore"):
            permuted = (np.outer(self._a, hashes) + self._b[:, None]) % _MERSENNE
        return permuted.min(axis=1).astype(np.uint32)


class Scrubber:
    """Replaces e-mail addresses with [EMAIL] and phone numbers with [PHONE], counting each."""

    def __init__(self, emails: bool, phones: bool):
        self.emails, self.phones = emails, phones
        self.emails_scrubbed = 0
        self.phones_scrubbed = 0

    @property
    def active(self) -> bool:
        return self.emails or self.phones

    def _phone(self, match: re.Match) -> str:
        found = match.group(0)
        digits = sum(c.isdigit() for c in found)
        if not 7 <= digits <= 15 or _NOT_PHONE.match(found):
            return found
        self.phones_scrubbed += 1
        return "[PHONE]"

    def text(self, text: str) -> str:
        if self.emails:
            text, count = _EMAIL.subn("[EMAIL]", text)
            self.emails_scrubbed += count
        if self.phones:
            text = _PHONE.sub(self._phone, text)
        return text

    def example(self, value: Any, key: str = "") -> Any:
        """Every string of an example (metadata included, provenance excepted) scrubbed."""
        if isinstance(value, str):
            return value if key in _PROVENANCE_KEYS else self.text(value)
        if isinstance(value, dict):
            return {k: self.example(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self.example(v, key) for v in value]
        return value
