"""SQL databases: SQLite files, PostgreSQL (psycopg 3) and MySQL/MariaDB (PyMySQL) by URL.

Every session is read-only on the server's side (not by inspecting the SQL), every statement
runs under a timeout, and rows stream from a server-side cursor in batches, so a table of any
size reads in bounded memory. Errors name the database with its password masked and never
repeat the password, even where a driver would.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from tinyforge.connectors.records import Row, SourceError

_DIALECTS = {"sqlite": "sqlite", "postgres": "postgresql", "postgresql": "postgresql",
             "mysql": "mysql", "mariadb": "mysql"}


def redact_url(url: str) -> str:
    """The URL with its password replaced by ***, for messages and metadata."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class ConnectionCheck:
    """What `test_connection()` found: the server and the columns the query returns."""

    dialect: str
    server_version: str
    columns: list[str]


@dataclass
class SqlSource:
    """Rows of a SELECT (or of `columns` of `table`) from the database at `url`."""

    url: str
    query: str | None = None
    table: str | None = None
    columns: list[str] = field(default_factory=list)
    row_limit: int | None = 1_000_000  # None: every row
    statement_timeout_s: float = 60.0  # per fetch on PostgreSQL and SQLite; per query on MySQL
    fetch_size: int = 2000
    connect_timeout_s: float = 10.0
    kind: str = "structured"
    truncated: bool = False  # True once the row limit stopped the read early

    def __post_init__(self) -> None:
        self.name = redact_url(self.url)
        scheme = urlsplit(self.url).scheme.split("+")[0].lower()
        if scheme not in _DIALECTS:
            raise SourceError(self.name, f"unsupported database URL scheme {scheme!r}: use sqlite:///path, "
                                         "postgresql://... or mysql://...")
        self.dialect = _DIALECTS[scheme]
        if bool(self.query) == bool(self.table):
            raise SourceError(self.name, "give either a query or a table (with optional columns), not both")
        if self.row_limit is not None and self.row_limit < 1:
            raise SourceError(self.name, "the row limit must be at least 1")
        self._rows_read = 0

    # -- public ------------------------------------------------------------------------

    def records(self) -> Iterator[Row]:
        yield from self._rows(self.row_limit)

    def progress(self) -> float | None:
        return self._rows_read / self.row_limit if self.row_limit else None

    def preview(self, n: int = 20) -> list[Row]:
        """The first `n` rows, read the same way as an import."""
        return list(self._rows(n))

    def test_connection(self) -> ConnectionCheck:
        """Connect, check the query runs, and return the server version and column names."""
        with self._session() as session:
            columns, _ = next(session.stream(self.sql(), 1), ([], []))
            return ConnectionCheck(self.dialect, session.server_version, columns)

    def sql(self) -> str:
        if self.query:
            return self.query.strip().rstrip(";").strip()
        quote = {"postgresql": _quote_double, "sqlite": _quote_double, "mysql": _quote_backtick}[self.dialect]
        columns = ", ".join(quote(c) for c in self.columns) if self.columns else "*"
        return f"SELECT {columns} FROM {quote(self.table)}"

    # -- internals ---------------------------------------------------------------------

    def _rows(self, limit: int | None) -> Iterator[Row]:
        number = 0
        with self._session(limit) as session:
            for columns, batch in session.stream(self.sql(), self.fetch_size):
                for values in batch:
                    number += 1
                    if limit is not None and number > limit:
                        self.truncated = True
                        return
                    self._rows_read = number
                    yield Row(self.name, f"row {number}", dict(zip(columns, map(coerce_value, values))))

    @contextlib.contextmanager
    def _session(self, limit: int | None = None):
        opener = {"sqlite": _SqliteSession, "postgresql": _PostgresSession, "mysql": _MysqlSession}[self.dialect]
        password = unquote(urlsplit(self.url).password or "")
        try:
            session = opener(self, limit)
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(self.name, f"could not connect: {_clean(exc, password)}") from None
        try:
            yield session
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(self.name, session.explain(exc, password)) from None
        finally:
            with contextlib.suppress(Exception):
                session.close()


def _quote_double(identifier: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in identifier.split("."))


def _quote_backtick(identifier: str) -> str:
    return ".".join("`" + part.replace("`", "``") + "`" for part in identifier.split("."))


def _clean(exc: Exception, password: str) -> str:
    message = " ".join(str(exc).split()) or type(exc).__name__
    return message.replace(password, "***") if password else message


class _SqliteSession:
    def __init__(self, source: SqlSource, limit: int | None):
        parts = urlsplit(source.url)
        # sqlite:///relative.db and sqlite:////absolute.db, as in dj-database-url and SQLAlchemy.
        path = Path(unquote(parts.netloc + parts.path)[1:])
        if not path.is_file():
            raise SourceError(source.name, f"no SQLite database file at {str(path)!r}")
        self.timeout = source.statement_timeout_s
        try:
            # mode=ro: SQLite itself refuses every write, whatever the statement.
            self.connection = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True,
                                              timeout=source.connect_timeout_s)
            self.connection.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            raise SourceError(source.name, f"could not open the SQLite file {path!r}: {exc}") from None
        self.server_version = f"SQLite {sqlite3.sqlite_version}"
        self.deadline = 0.0
        self.connection.set_progress_handler(lambda: int(time.monotonic() > self.deadline), 10_000)

    def stream(self, sql: str, size: int) -> Iterator[tuple[list[str], list[tuple]]]:
        self.deadline = time.monotonic() + self.timeout
        cursor = self.connection.execute(sql)
        columns = [d[0] for d in cursor.description or ()]
        while True:
            self.deadline = time.monotonic() + self.timeout
            batch = cursor.fetchmany(size)
            yield columns, batch
            if not batch:
                return

    def explain(self, exc: Exception, password: str) -> str:
        text = str(exc)
        if "interrupted" in text:
            return f"the query ran past the statement timeout of {self.timeout:g} s and was cancelled"
        if "readonly" in text or "read-only" in text or "query_only" in text:
            return f"refused by the read-only session: {text}"
        return f"query failed: {_clean(exc, password)}"

    def close(self) -> None:
        self.connection.close()


class _PostgresSession:
    def __init__(self, source: SqlSource, limit: int | None):
        import psycopg

        parts = urlsplit(source.url)
        url = urlunsplit(parts._replace(scheme="postgresql"))
        self.timeout = source.statement_timeout_s
        self.connection = psycopg.connect(
            url, connect_timeout=max(1, int(source.connect_timeout_s)), application_name="tinyforge-ingest",
            # Read-only and the timeout are set by the server for the whole session.
            options=f"-c default_transaction_read_only=on -c statement_timeout={int(self.timeout * 1000)}")
        self.connection.read_only = True
        self.server_version = "PostgreSQL " + str(self.connection.info.parameter_status("server_version"))

    def stream(self, sql: str, size: int):
        # A named cursor is a server-side cursor: each fetchmany() is one FETCH of `size` rows.
        with self.connection.cursor(name="tinyforge_ingest") as cursor:
            cursor.execute(sql)
            batch = cursor.fetchmany(size)
            columns = [d.name for d in cursor.description or ()]
            while True:
                yield columns, batch
                if not batch:
                    return
                batch = cursor.fetchmany(size)

    def explain(self, exc: Exception, password: str) -> str:
        import psycopg.errors as pg

        if isinstance(exc, pg.QueryCanceled):
            return f"the query ran past the statement timeout of {self.timeout:g} s and was cancelled"
        if isinstance(exc, pg.ReadOnlySqlTransaction):
            return f"refused by the read-only session: {_clean(exc, password)}"
        return f"query failed: {_clean(exc, password)}"

    def close(self) -> None:
        self.connection.rollback()
        self.connection.close()


class _MysqlSession:
    def __init__(self, source: SqlSource, limit: int | None):
        import pymysql
        import pymysql.cursors

        parts = urlsplit(source.url)
        options = dict(parse_qsl(parts.query))
        self.timeout = source.statement_timeout_s
        self.connection = pymysql.connect(
            host=parts.hostname or "localhost", port=parts.port or 3306, user=unquote(parts.username or ""),
            password=unquote(parts.password or ""), database=unquote(parts.path.lstrip("/")) or None,
            charset=options.get("charset", "utf8mb4"), connect_timeout=source.connect_timeout_s,
            # A backstop for a server that ignores the statement timeout below.
            read_timeout=self.timeout + 30, cursorclass=pymysql.cursors.SSCursor, autocommit=False)
        self.server_version = self.connection.get_server_info()
        with self.connection.cursor() as cursor:
            if "mariadb" in self.server_version.lower():
                cursor.execute(f"SET SESSION max_statement_time = {self.timeout:.3f}")
            else:
                cursor.execute(f"SET SESSION max_execution_time = {int(self.timeout * 1000)}")
            if limit is not None:
                # The server stops after one row past the limit (which tells that rows were left),
                # so closing the streaming cursor has almost nothing left to drain.
                cursor.execute(f"SET SESSION sql_select_limit = {int(limit) + 1}")
            cursor.execute("SET SESSION TRANSACTION READ ONLY")
            cursor.execute("START TRANSACTION READ ONLY")

    def stream(self, sql: str, size: int):
        with self.connection.cursor() as cursor:
            cursor.execute(sql)
            columns = [d[0] for d in cursor.description or ()]
            while True:
                batch = cursor.fetchmany(size)
                yield columns, batch
                if not batch:
                    return

    def explain(self, exc: Exception, password: str) -> str:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        if code in (1969, 3024, 1317):  # max_statement_time / max_execution_time exceeded, interrupted
            return f"the query ran past the statement timeout of {self.timeout:g} s and was cancelled"
        if code == 1792:  # ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
            return f"refused by the read-only session: {_clean(exc, password)}"
        return f"query failed: {_clean(exc, password)}"

    def close(self) -> None:
        self.connection.close()


def coerce_value(value: Any) -> Any:
    """A database value as JSON can hold it: text stays text, the rest becomes str()."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)
