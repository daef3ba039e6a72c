"""From a dataset version's recorded source to connectors: which Sources to read, with which
IngestOptions. The ingest job and the connection endpoints (test, preview) both build their
sources here, so an import reads exactly what its preview showed.

A version's `source_config` is one flat object: the source's own fields (uploaded files, a SQL
query, Google document ids) next to the import options (mapping, recipe, chunking, cleaning,
base model for the token report). Secrets never appear in it: they stay encrypted in the
DataConnection and reach the connector only inside the job.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from django.conf import settings

from tinyforge.connectors.files import FileSource
from tinyforge.connectors.gdocs import GOOGLE_ENDPOINTS, GOOGLE_TOKEN_URIS, GoogleDocsSource
from tinyforge.connectors.pipeline import IngestOptions
from tinyforge.connectors.knowledge import KnowledgeOptions
from tinyforge.connectors.recipes import QAOptions
from tinyforge.connectors.teacher import TeacherOptions
from tinyforge.connectors.records import Source, SourceError
from tinyforge.connectors.sql import SqlSource, redact_url
from tinyforge.core import storage
from tinyforge.datasets.models import ConnectionKind, DataConnection, DatasetVersion, SourceKind
from tinyforge.errors import TinyforgeError

# Keys of source_config that are import options (the rest describe the source).
OPTION_FIELDS = ("mapping", "recipe", "chunk_chars", "overlap_chars", "qa", "knowledge", "dedup", "near_dedup",
                 "near_threshold", "scrub_emails", "scrub_phones", "skip_bad_records")
REPORT_FIELDS = ("base_model", "max_seq_length")


def ingest_options(config: dict, team_id: int | None = None) -> IngestOptions:
    """The pipeline options recorded in a source_config (validated when the version was created).
    `team_id`: the team importing, whose deployments the platform's own inference service answers for."""
    values = {name: config[name] for name in OPTION_FIELDS if config.get(name) is not None}
    if "qa" in values:
        qa = values["qa"]
        # Checked again here: the allow-list may have changed since the version was created.
        values["qa"] = QAOptions(qa["base_url"], qa["model"], api_key=teacher_api_key(qa["base_url"], team_id),
                                 questions_per_chunk=qa.get("questions_per_chunk", 3))
    if "knowledge" in values:
        knobs = {k: v for k, v in values["knowledge"].items() if v is not None}
        base_url, model = knobs.pop("base_url"), knobs.pop("model")
        teacher = TeacherOptions(base_url, model, api_key=teacher_api_key(base_url, team_id))
        values["knowledge"] = KnowledgeOptions(teacher, **knobs)
    return IngestOptions(**values)


def teacher_api_key(base_url: str, team_id: int | None) -> str:
    """The key to send a teacher at `base_url` (which must be allow-listed, see qa_api_key). For the
    platform's own inference service without an operator's key, a key the platform signs itself for
    the importing team: it answers for that team's deployments only, expires, and is never stored."""
    key = qa_api_key(base_url)
    if key == "none" and team_id is not None and _comparable_url(base_url) == _comparable_url(own_inference_url()):
        from tinyforge.deployments.inference import team_key

        return team_key(team_id)
    return key


def own_inference_url() -> str:
    return settings.INFERENCE_URL.rstrip("/") + "/v1"


def _comparable_url(url: str) -> str:
    parts = urlsplit(url.strip())
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query, ""))


def qa_api_key(base_url: str) -> str:
    """The API key for the qa recipe's model server at `base_url`, which must be one an administrator
    allowed (settings.QA_BASE_URLS): the server makes the requests, so a URL of the user's choosing
    could reach anything the server can. Raises TinyforgeError naming the setting otherwise."""
    allowed = {_comparable_url(url): key for url, key in settings.QA_BASE_URLS.items()}
    wanted = _comparable_url(base_url)
    if wanted not in allowed:
        raise TinyforgeError(f"{base_url} is not a model server this platform may call; an administrator lists "
                             f"those in TINYFORGE_QA_BASE_URLS (allowed now: {', '.join(allowed)})")
    return allowed[wanted] or "none"  # the client needs a value; keyless servers ignore it


def google_api_root_allowed(api_root: str) -> None:
    """A Google connection's `api_root` must be one of Google's endpoints or one an administrator allowed
    (settings.GOOGLE_API_ROOTS): the server sends the connection's credentials there, so a root of the
    user's choosing could reach anything the server can. Raises TinyforgeError naming the setting otherwise."""
    allowed = [_comparable_url(root) for root in (*GOOGLE_ENDPOINTS, *settings.GOOGLE_API_ROOTS)]
    if _comparable_url(api_root) not in allowed:
        raise TinyforgeError(f"{api_root} is not an API root this platform may send Google credentials to; an "
                             f"administrator lists those in TINYFORGE_GOOGLE_API_ROOTS (allowed now: "
                             f"{', '.join(allowed)})")


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a plain http(s) URL; None for anything else, user info and backslashes
    included, since URL parsers disagree on which host such URLs name."""
    if not url.isascii() or not url.isprintable() or " " in url or "\\" in url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80)


def google_token_uri_allowed(token_uri) -> None:
    """A Google credentials JSON's `token_uri` must be Google's token endpoint or lie on the host of an API
    root an administrator allowed (settings.GOOGLE_API_ROOTS): google-auth posts its token request there,
    so a URL of the user's choosing could reach anything the server can. Raises TinyforgeError naming the
    setting otherwise."""
    origin = _origin(token_uri) if isinstance(token_uri, str) else None
    if origin is not None:
        if _comparable_url(token_uri) in map(_comparable_url, GOOGLE_TOKEN_URIS):
            return
        if origin in {_origin(root) for root in (*GOOGLE_ENDPOINTS, *settings.GOOGLE_API_ROOTS)}:
            return
    roots = ", ".join(_comparable_url(root) for root in settings.GOOGLE_API_ROOTS) or "none"
    raise TinyforgeError(f"token_uri {token_uri!r} is not a token endpoint this platform may send Google credentials "
                         f"to: use Google's ({', '.join(GOOGLE_TOKEN_URIS)}) or one on the host of an API root an "
                         f"administrator lists in TINYFORGE_GOOGLE_API_ROOTS (allowed now: {roots})")


def sqlite_allowed(url: str) -> None:
    """SQLite URLs may only name files below TINYFORGE_SQLITE_IMPORT_DIRS: without this, anyone who
    can add a connection could read any SQLite file the server can, the platform's own included."""
    parts = urlsplit(url)
    if parts.scheme.split("+")[0].lower() != "sqlite":
        return
    path = Path(unquote(parts.netloc + parts.path)[1:]).resolve()
    roots = [Path(root).resolve() for root in settings.SQLITE_IMPORT_DIRS]
    if not roots:
        raise TinyforgeError("SQLite files cannot be imported through the API on this server: an administrator "
                             "must list the folders that hold them in TINYFORGE_SQLITE_IMPORT_DIRS")
    if not any(path == root or root in path.parents for root in roots):
        raise TinyforgeError(f"{path} is outside the folders SQLite files may be imported from "
                             f"({', '.join(str(r) for r in roots)}; TINYFORGE_SQLITE_IMPORT_DIRS)")


def sql_source(connection: DataConnection, config: dict, *, row_limit: int | None = None) -> SqlSource:
    """A SqlSource for a saved SQL connection and a query (or table and columns)."""
    if connection.kind != ConnectionKind.SQL:
        raise TinyforgeError(f"connection {connection.name!r} is a {connection.get_kind_display()} connection, "
                             "not a SQL database")
    url = credentials_of(connection)["url"]
    sqlite_allowed(url)
    return SqlSource(
        url, query=config.get("query") or None, table=config.get("table") or None,
        columns=list(config.get("columns") or []),
        row_limit=row_limit if row_limit is not None else config.get("row_limit", 1_000_000),
        statement_timeout_s=float(config.get("statement_timeout_s", 60.0)),
    )


def google_source(connection: DataConnection, config: dict, workdir: Path) -> GoogleDocsSource:
    """A GoogleDocsSource for a saved Google connection; a key file is written to `workdir`
    (private to the job, removed with it) because the Google client reads keys from files."""
    if connection.kind != ConnectionKind.GOOGLE:
        raise TinyforgeError(f"connection {connection.name!r} is a {connection.get_kind_display()} connection, "
                             "not a Google connection")
    api_root = connection.options.get("api_root") or None
    if api_root:
        google_api_root_allowed(api_root)  # again here: the allow-list may have changed since the connection was saved
    credentials = credentials_of(connection)
    key_file = None
    token = credentials.get("oauth_token")
    key = credentials.get("service_account_json") or credentials.get("authorized_user_json")
    if key and "token_uri" in key:
        google_token_uri_allowed(key["token_uri"])  # again here, as api_root above
    if key:
        workdir.mkdir(parents=True, exist_ok=True)
        key_file = workdir / "google-credentials.json"
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(key, handle)
    return GoogleDocsSource(list(config.get("document_ids") or []), config.get("folder_id") or None,
                            str(key_file) if key_file else None, token,
                            api_root=api_root)


def credentials_of(connection: DataConnection) -> dict:
    try:
        return connection.get_credentials()
    except ValueError as exc:  # undecryptable: the keys changed since it was saved
        raise TinyforgeError(str(exc)) from None


def version_sources(version: DatasetVersion, workdir: Path) -> list[Source]:
    """What a version imports: one Source per uploaded file (or the file of rows written from feedback:
    deployments/feedback.py), or its SQL query, or its Google Docs."""
    config = version.source_config
    if version.source_kind in (SourceKind.UPLOAD, SourceKind.OPENAI_FILE, SourceKind.FEEDBACK):
        return [FileSource(str(storage.path(item["key"])), format=config.get("format") or None, name=item["name"],
                           encoding=config.get("encoding") or None)
                for item in config.get("files", [])]
    if version.connection is None and version.source_kind in (SourceKind.SQL, SourceKind.GOOGLE_DOCS):
        raise TinyforgeError("the connection this import used was deleted; save it again and import anew")
    if version.source_kind == SourceKind.SQL:
        return [sql_source(version.connection, config)]
    if version.source_kind == SourceKind.GOOGLE_DOCS:
        return [google_source(version.connection, config, workdir)]
    if version.source_kind == SourceKind.DERIVED:
        parent = version.parent
        if parent is None or not parent.storage_key or not storage.exists(parent.storage_key):
            raise TinyforgeError("the version this one derives from is gone")
        return [FileSource(str(storage.path(parent.storage_key)), format="jsonl",
                           name=f"{parent.dataset.name} v{parent.number}")]
    raise TinyforgeError(f"imports of kind {version.source_kind!r} are not run by the ingest job")


def connection_options(kind: str, credentials: dict) -> dict:
    """What is safe to show about a connection's credentials (never the secret itself)."""
    if kind == ConnectionKind.SQL:
        parts = urlsplit(credentials["url"])
        return {"dialect": parts.scheme.split("+")[0].lower(), "host": parts.hostname or "",
                "port": parts.port, "database": unquote(parts.path.lstrip("/")), "user": parts.username or "",
                "url": redact_url(credentials["url"])}
    if credentials.get("service_account_json"):
        return {"auth": "service_account", "client_email": credentials["service_account_json"].get("client_email", "")}
    if credentials.get("authorized_user_json"):
        return {"auth": "authorized_user"}
    return {"auth": "oauth_token"}


__all__ = ["OPTION_FIELDS", "REPORT_FIELDS", "SourceError", "connection_options", "google_api_root_allowed", "google_source",
           "google_token_uri_allowed", "ingest_options",
           "own_inference_url", "qa_api_key", "sql_source", "sqlite_allowed", "teacher_api_key", "version_sources"]
