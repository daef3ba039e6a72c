"""The one place that knows where files live under TINYFORGE_DATA_DIR.

Records store *keys* (relative, forward-slash paths such as
`projects/3/datasets/7/versions/12/data.jsonl`), never absolute paths, so the data directory can
move (a volume in compose) and an object store can replace this module later.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Iterator

from django.conf import settings
from django.db import transaction


class StorageKeyError(ValueError):
    """A key that would point outside the data directory."""


def root() -> Path:
    return Path(settings.TINYFORGE_DATA_DIR)


def path(key: str) -> Path:
    """The absolute path of a key; refuses keys that climb out of the data directory."""
    pure = PurePosixPath(key)
    if not key or pure.is_absolute() or ".." in pure.parts or "\x00" in key:
        raise StorageKeyError(f"invalid storage key {key!r}")
    return root().joinpath(*pure.parts)


def key_of(file_path: Path) -> str:
    """The key of a path inside the data directory (for files a job wrote by path)."""
    relative = Path(file_path).resolve().relative_to(root().resolve())
    return relative.as_posix()


class MissingFile(FileNotFoundError):
    """A record points at a file that is gone from the data directory."""


def open_for_download(key: str):
    """The file of a key opened for reading; MissingFile (409 in the API) when it is gone."""
    try:
        return path(key).open("rb")
    except (FileNotFoundError, IsADirectoryError):
        raise MissingFile(f"the file of this record is missing from the data directory ({key})") from None


def exists(key: str) -> bool:
    return path(key).exists()


def size(key: str) -> int:
    """Bytes of a file, or of every file below a folder."""
    target = path(key)
    if target.is_dir():
        return sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    return target.stat().st_size


def delete(key: str) -> None:
    """Remove a file or a folder; a missing one is not an error (deletes are retried)."""
    target = path(key)
    if target.is_dir():
        shutil.rmtree(target, ignore_errors=True)
    else:
        target.unlink(missing_ok=True)


def delete_on_commit(keys: list[str]) -> None:
    """Remove files once the transaction that deleted their records commits: a rolled-back delete
    keeps its files, and a committed one leaves none behind."""
    def remove():
        for key in keys:
            delete(key)

    transaction.on_commit(remove)


@contextmanager
def atomic_write(key: str, mode: str = "wb") -> Iterator:
    """Write a file so readers see either nothing or the whole of it (temp file + rename)."""
    target = path(key)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def folder(key: str) -> Path:
    """A folder for a key, created if missing (model outputs, checkpoints)."""
    target = path(key)
    target.mkdir(parents=True, exist_ok=True)
    return target


# Keys of the things the platform stores. Jobs and services use these, never their own paths.

# An extension the readers may need to tell a file's format: short, plain letters and digits.
_PLAIN_EXTENSION = re.compile(r"\.[a-z0-9]{1,10}")
DISPLAY_NAME_LENGTH = 120


def upload_key(project_id: int, upload_id: str, client_name: str) -> str:
    """Where an uploaded file is stored. The name is generated, never the client's (a client's name
    can be too long for the file system, or mean something to it); only a plain extension is
    kept, which is how readers tell the format."""
    extension = PurePosixPath(display_name(client_name)).suffix.lower()
    if not _PLAIN_EXTENSION.fullmatch(extension):
        extension = ""
    return f"projects/{project_id}/uploads/{upload_id}{extension}"


def display_name(client_name: str) -> str:
    """A client's file name as metadata to show: its last path part, printable characters only,
    at most DISPLAY_NAME_LENGTH characters with the extension kept when it is shortened."""
    name = "".join(ch for ch in client_name.replace("\\", "/").rsplit("/", 1)[-1] if ch.isprintable()
                   and not 0xD800 <= ord(ch) <= 0xDFFF).strip() or "upload"
    if len(name) <= DISPLAY_NAME_LENGTH:
        return name
    stem, dot, extension = name.rpartition(".")
    tail = f"…{dot}{extension}" if stem and len(extension) <= 10 else "…"
    return name[: DISPLAY_NAME_LENGTH - len(tail)] + tail


def dataset_version_key(project_id: int, dataset_id: int, version_id: int) -> str:
    return f"projects/{project_id}/datasets/{dataset_id}/versions/{version_id}/data.jsonl"


def eval_set_version_key(project_id: int, eval_set_id: int, version_id: int) -> str:
    return f"projects/{project_id}/eval-sets/{eval_set_id}/versions/{version_id}/rows.jsonl"


def run_key(project_id: int, run_id: int) -> str:
    """The folder of a training run: its model output and checkpoints live below it."""
    return f"projects/{project_id}/runs/{run_id}"


def checkpoint_key(project_id: int, run_id: int, step: int) -> str:
    return f"{run_key(project_id, run_id)}/checkpoints/step-{step:08d}"


def run_output_key(project_id: int, run_id: int) -> str:
    return f"{run_key(project_id, run_id)}/model"


def deployment_key(project_id: int, deployment_id: int) -> str:
    return f"projects/{project_id}/deployments/{deployment_id}"


def gguf_base_folder_key() -> str:
    """GGUF conversions of base models (one folder each, named by the base folder's fingerprint), shared
    by every llama.cpp deployment of that base: one file and one llama-server for all its adapters."""
    return "llama-cpp/bases"


def export_folder_key(project_id: int, export_id: int) -> str:
    return f"projects/{project_id}/exports/{export_id}"


def export_key(project_id: int, export_id: int, filename: str) -> str:
    return f"{export_folder_key(project_id, export_id)}/{filename}"
