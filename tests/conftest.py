"""Fixtures shared by every test area."""

from __future__ import annotations

import pytest

from tinymodel import build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A two-layer Llama with its own tokenizer and chat template, as a Hugging Face folder.

    Read-only for tests: copy it before changing anything inside.
    """
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))
