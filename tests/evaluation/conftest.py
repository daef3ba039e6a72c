import pytest

from evaluation.judge_server import judge_server


@pytest.fixture
def judge():
    with judge_server() as server:
        yield server
