"""Duplicate removal and personal-data scrubbing for examples on their way to the dataset.

Both kinds of duplicate are found on the words of an example, lowercased: runs of letters,
digits and "_" (every non-ASCII character counts as a letter, so words in any script hold
together; punctuation and spacing never make a new example).

Exact duplicates: a 64-bit digest of the words joined by single spaces, per kept example.
Near duplicates: MinHash signatures over word 3-grams, banded for locality-sensitive hashing,
with each candidate confirmed by the signatures' estimated Jaccard similarity. Both run as a
handful of numpy operations over the bytes of a batch of examples (no Python object per word,
no numpy call per example): a few microseconds per example, where a per-word Python loop cost
more than parsing the document the example came from. The near-duplicate index costs about 1 KB per kept example; that is why it is on by
default for documents (hundreds to thousands of chunks) and opt-in for large structured sources.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np

# Bytes that belong to a word in lowercased UTF-8 text; bytes >= 0x80 are parts of non-ASCII characters.
_WORD_BYTE = np.zeros(256, dtype=bool)
_WORD_BYTE[list(b"abcdefghijklmnopqrstuvwxyz0123456789_")] = True
_WORD_BYTE[0x80:] = True
_SPACE = np.uint8(ord(" "))
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# Phone numbers: optional +country code, optional (area), then digit groups split by space, dot or
# dash. A match needs 7 to 15 digits and is not a date or a dotted IP address.
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){1,4}(?![\w])")
_NOT_PHONE = re.compile(r"^\d{4}-\d{2}-\d{2}$|^\d{1,3}(?:\.\d{1,3}){3}$|^\d{1,2}[./]\d{1,2}[./]\d{2,4}$")
_PROVENANCE_KEYS = {"source", "location", "heading_path", "pages"}


def example_text(example: dict[str, Any]) -> str:
    """What the model sees of an example (metadata excluded)."""
    if any(k in example for k in ("chosen", "rejected", "completion")):  # a preference row (TRL's shapes)
        parts = [example.get("prompt") or example.get("messages"), example.get("chosen"), example.get("rejected"),
                 example.get("completion"), example.get("label")]
        return "\n".join(_text_of(p) for p in parts if p is not None)
    if "messages" in example:
        return _text_of(example["messages"])
    return "\n".join(example.get(k) or "" for k in ("instruction", "input", "output"))


def _text_of(value) -> str:
    if isinstance(value, list):
        return "\n".join(f"{m.get('role')}: {m.get('content')}" if isinstance(m, dict) else str(m) for m in value)
    return str(value)


class Deduplicator:
    """Says whether each example repeats an earlier one, exactly or nearly."""

    def __init__(self, exact: bool = True, near: bool = True, threshold: float = 0.85,
                 permutations: int = 64, bands: int = 16):
        if permutations % bands:
            raise ValueError("permutations must be a multiple of bands")
        self.exact, self.near, self.threshold = exact, near, threshold
        self.bands, self.rows_per_band = bands, permutations // bands
        self._min_matches = threshold * permutations
        rng = np.random.default_rng(20240611)  # fixed: the same input always keeps the same rows
        # Tabulation hashing of words: a random value per (byte, position in the word mod 16), xored.
        self._byte_values = rng.integers(0, 1 << 32, size=16 * 256, dtype=np.uint32)
        # The "permutations": x -> (a * x) ^ b mod 2**32 with odd a, a bijection. The shingle hashes
        # are already uniformly spread, and on such input this family gives unbiased Jaccard
        # estimates with the binomial spread of true MinHash, in 32-bit arithmetic (fast).
        self._multipliers = rng.integers(0, 1 << 32, size=permutations, dtype=np.uint32) | np.uint32(1)
        self._masks = rng.integers(0, 1 << 32, size=permutations, dtype=np.uint32)
        # Each band of the signature becomes one integer key; a different random combination per
        # band keeps equal rows of different bands apart. A collision only costs a comparison.
        self._band_weights = rng.integers(1, 1 << 63, size=(bands, self.rows_per_band), dtype=np.uint64)
        self._digests: set[int] = set()
        self._buckets: dict[int, int] = {}
        self._signatures: list[np.ndarray] = []
        self.exact_duplicates = 0
        self.near_duplicates = 0

    def is_duplicate(self, text: str) -> bool:
        return self.duplicates([text])[0]

    def duplicates(self, texts: list[str], remember: bool = True) -> list[bool]:
        """For each text in order, whether it repeats an earlier one (of this call or an earlier call).

        A batch costs about as many numpy calls as one text, so callers that can hold a few
        dozen examples should pass them together. With remember=False the texts are only compared
        with those already kept, not kept themselves (nor compared with each other).
        """
        if not texts or not (self.exact or self.near):
            return [False] * len(texts)
        encoded = [text.lower().encode() for text in texts]
        # One byte array for the batch; the "\n" between texts is not a word byte, so no word spans two.
        data = np.frombuffer(b"\n".join(encoded), dtype=np.uint8)
        bounds = np.cumsum([0] + [len(e) + 1 for e in encoded])  # text i is data[bounds[i]:bounds[i + 1] - 1]
        in_word = _WORD_BYTE[data]
        after_word = np.zeros_like(in_word)
        after_word[1:] = in_word[:-1]
        digests = self._digests_of(data, in_word, after_word, bounds) if self.exact else None
        signatures, keys = self._signatures_of(data, in_word, after_word, bounds, len(texts)) if self.near else ({}, {})
        flags = []
        for i in range(len(texts)):
            if digests is not None:
                if digests[i] in self._digests:
                    self.exact_duplicates += 1
                    flags.append(True)
                    continue
                if remember:
                    self._digests.add(digests[i])
            flags.append(i in signatures and self._near_duplicate(signatures[i], keys[i], remember))
        return flags

    def _digests_of(self, data: np.ndarray, in_word: np.ndarray, after_word: np.ndarray,
                    bounds: np.ndarray) -> list[int]:
        # The words joined by single spaces: the first byte after each word stands for the gap.
        kept = in_word | after_word
        folded = np.where(in_word, data, _SPACE)[kept].tobytes()
        kept_before = np.concatenate(([0], np.cumsum(kept)))
        starts, stops = kept_before[bounds[:-1]].tolist(), kept_before[bounds[1:] - 1].tolist()
        return [int.from_bytes(hashlib.blake2b(folded[start:stop].strip(b" "), digest_size=8).digest(), "big")
                for start, stop in zip(starts, stops)]

    def _signatures_of(self, data: np.ndarray, in_word: np.ndarray, after_word: np.ndarray, bounds: np.ndarray,
                       count: int) -> tuple[dict[int, np.ndarray], dict[int, list[int]]]:
        """MinHash signature and band keys of each text with at least one word 3-gram, by index."""
        word_start = in_word & ~after_word
        starts = np.flatnonzero(word_start)
        if len(starts) < 3:
            return {}, {}
        # Tabulation hashing: per byte a random value for (position in the word mod 16, byte), xored
        # over the word. Bytes before the first word get index -1 and are zeroed with the gaps.
        position = np.arange(len(data)) - starts[np.cumsum(word_start) - 1]
        values = self._byte_values[((position & 15) << 8) | data]
        values[~in_word] = 0
        words = np.bitwise_xor.reduceat(values, starts)
        text_of_word = np.searchsorted(bounds, starts, side="right") - 1
        within_text = text_of_word[:-2] == text_of_word[2:]
        # Odd multipliers tell "a b c" from "c b a"; uint32 products wrap on purpose.
        shingles = (words[:-2] ^ words[1:-1] * np.uint32(0x9E3779B1) ^ words[2:] * np.uint32(0x85EBCA77))[within_text]
        text_of_shingle = text_of_word[:-2][within_text]
        if not len(shingles):
            return {}, {}
        with_shingles, first_shingle = np.unique(text_of_shingle, return_index=True)
        permuted = np.multiply.outer(self._multipliers, shingles)
        permuted ^= self._masks[:, None]
        signatures = np.minimum.reduceat(permuted, first_shingle, axis=1).T.copy()  # one row per text
        with np.errstate(over="ignore"):
            keys = (signatures.reshape(len(signatures), self.bands, self.rows_per_band)
                    * self._band_weights).sum(axis=2).tolist()
        indexes = with_shingles.tolist()
        return dict(zip(indexes, signatures)), dict(zip(indexes, keys))

    def _near_duplicate(self, signature: np.ndarray, keys: list[int], remember: bool = True) -> bool:
        for key in keys:
            other = self._buckets.get(key)
            if other is not None and np.count_nonzero(self._signatures[other] == signature) >= self._min_matches:
                self.near_duplicates += 1
                return True
        if not remember:
            return False
        index = len(self._signatures)
        self._signatures.append(signature)
        for key in keys:
            self._buckets.setdefault(key, index)
        return False


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
