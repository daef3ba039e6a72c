"""Typed readers for settings taken from the environment.

Every setting of the control plane comes through one of these so that a typo in a value
(`DEBUG=ture`, `PORT=80a`) stops the process at start with the variable's name, instead of
silently becoming a default. Secrets may also come from `<NAME>_FILE` (Docker and Kubernetes
secrets are mounted as files).

Pure Python: the demo command reads the same variables before Django is configured.
"""

from __future__ import annotations

import os
from pathlib import Path

from tinyforge.errors import TinyforgeError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_UNSET = object()


class SettingError(TinyforgeError):
    """An environment variable holds a value the control plane cannot use."""


def _raw(name: str, secret: bool) -> str | None:
    value = os.environ.get(name)
    if secret:
        file_name = os.environ.get(f"{name}_FILE")
        if file_name:
            if value is not None:
                raise SettingError(f"set either {name} or {name}_FILE, not both")
            try:
                return Path(file_name).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SettingError(f"{name}_FILE={file_name}: cannot read the file ({exc.strerror})") from exc
    if value is not None and value.strip() == "":
        return None  # an empty line in an .env file means "not set"
    return value


def env_str(name: str, default=_UNSET, *, secret: bool = False, choices: tuple[str, ...] | None = None) -> str:
    """A string; `default` unset means the variable is required."""
    value = _raw(name, secret)
    if value is None:
        if default is _UNSET:
            hint = f" (or {name}_FILE)" if secret else ""
            raise SettingError(f"{name}{hint} is required but not set")
        return default
    if choices is not None and value not in choices:
        raise SettingError(f"{name}={value!r}: expected one of {', '.join(choices)}")
    return value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name, secret=False)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise SettingError(f"{name}={value!r}: expected a boolean (true/false, 1/0, yes/no, on/off)")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    return _env_number(name, default, int, "a whole number", minimum, maximum)


def env_float(name: str, default: float, *, minimum: float | None = None, maximum: float | None = None) -> float:
    return _env_number(name, default, float, "a number", minimum, maximum)


def _env_number(name, default, parse, expected: str, minimum, maximum):
    value = _raw(name, secret=False)
    if value is None:
        return default
    try:
        number = parse(value.strip())
    except ValueError:
        raise SettingError(f"{name}={value!r}: expected {expected}") from None
    if minimum is not None and number < minimum:
        raise SettingError(f"{name}={number}: must be at least {minimum}")
    if maximum is not None and number > maximum:
        raise SettingError(f"{name}={number}: must be at most {maximum}")
    return number


def env_url(name: str, default: str | None, *, schemes: tuple[str, ...] = ("http", "https"),
            secret: bool = False) -> str | None:
    """An absolute URL of one of `schemes` (without a trailing slash), or `default` when unset."""
    from urllib.parse import urlsplit

    value = _raw(name, secret)
    if value is None:
        return default
    parts = urlsplit(value.strip())
    if parts.scheme not in schemes or not parts.netloc:
        raise SettingError(f"{name}={value!r}: expected a URL starting with {' or '.join(s + '://' for s in schemes)}")
    return value.strip().rstrip("/")


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated list; blanks around items are ignored."""
    value = _raw(name, secret=False)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_named_folders(name: str) -> dict[str, str]:
    """Comma-separated `name=/absolute/folder` pairs, as {name: folder}."""
    folders: dict[str, str] = {}
    for item in env_list(name, []):
        key, sep, folder = (part.strip() for part in item.partition("="))
        if not sep or not key or not Path(folder).is_absolute():
            raise SettingError(f"{name}: {item!r} is not name=/absolute/folder")
        if key in folders:
            raise SettingError(f"{name}: {key!r} is named twice")
        folders[key] = folder
    return folders


def repository_root() -> Path | None:
    """The source checkout this package runs from, or None when installed as a wheel."""
    candidate = Path(__file__).resolve().parents[3]
    if (candidate / "backend" / "pyproject.toml").is_file():
        return candidate
    return None


def data_dir() -> Path:
    """TINYFORGE_DATA_DIR, or `.tinyforge/data` in the source checkout (else the working directory)."""
    configured = env_str("TINYFORGE_DATA_DIR", None)
    if configured:
        return Path(configured).expanduser().resolve()
    return ((repository_root() or Path.cwd()) / ".tinyforge" / "data").resolve()


def embedded_redis_socket(directory: Path) -> Path:
    """Where the embedded Redis of a data directory listens.

    Unix socket paths are limited to about 100 bytes; a deep data directory gets a short
    path under the system's temporary directory named after it instead.
    """
    socket = directory / "redis" / "redis.sock"
    if len(str(socket)) < 100:
        return socket
    import hashlib
    import tempfile

    digest = hashlib.sha256(str(directory).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"tinyforge-redis-{digest}" / "redis.sock"
