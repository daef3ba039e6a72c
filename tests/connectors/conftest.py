"""Fixtures for the connectors: the bad-file corpus, written once per session."""

from __future__ import annotations

import pytest

from samples import write_bad_corpus


@pytest.fixture(scope="session")
def bad_files(tmp_path_factory):
    """Hostile and broken files by case name (see tests/connectors/samples.py)."""
    return write_bad_corpus(tmp_path_factory.mktemp("bad"))
