import pytest

from tinyforge.core import storage


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../x", "a/../../x", "a\x00b"])
def test_it_refuses_keys_outside_the_data_directory(key):
    with pytest.raises(storage.StorageKeyError):
        storage.path(key)


def test_it_writes_whole_files_or_nothing(tinyforge_data_dir):
    key = "tests/atomic/file.txt"
    with pytest.raises(RuntimeError), storage.atomic_write(key) as handle:
        handle.write(b"half")
        raise RuntimeError("disk full")
    assert not storage.exists(key)
    assert list(storage.path("tests/atomic").iterdir()) == []
    with storage.atomic_write(key) as handle:
        handle.write(b"whole")
    assert storage.path(key).read_bytes() == b"whole" and storage.size(key) == 5
    storage.delete(key)
    assert not storage.exists(key)
