"""The SQL connector against a real SQLite file, PostgreSQL server and MariaDB server.

PostgreSQL and MariaDB tests use their own database (tf_connectors). They are skipped only
when the server is unreachable and its URL variable (DATABASE_URL / MYSQL_TEST_URL) is unset;
CI sets the variables, so there they must run.
"""

from __future__ import annotations

import os
import sqlite3
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from tinyforge.connectors.records import SourceError
from tinyforge.connectors.sql import SqlSource, redact_url

DB = "tf_connectors"
ROWS = [(i, f"question {i}", f"answer {i}") for i in range(1, 51)]


def _server_url(variable: str, default: str, schemes: tuple[str, ...]) -> tuple[str, bool]:
    url = os.environ.get(variable, "")
    if url and urlsplit(url).scheme.split("+")[0] in schemes:
        return url, True
    return default, False


def _with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


@pytest.fixture(scope="module")
def postgresql_url():
    import psycopg

    url, required = _server_url("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres",
                                ("postgres", "postgresql"))
    # The server's maintenance database: DATABASE_URL names the platform's database, which may not
    # exist yet (pytest-django creates test_<name>, not <name>).
    url = _with_database(urlunsplit(urlsplit(url)._replace(scheme="postgresql")), "postgres")
    try:
        admin = psycopg.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if required:
            raise
        pytest.skip(f"PostgreSQL unreachable and DATABASE_URL unset: {exc}")
    with admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DB}")
    url = _with_database(url, DB)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE qa (id int PRIMARY KEY, question text, answer text, asked date)")
        with conn.cursor() as cursor:
            cursor.executemany("INSERT INTO qa VALUES (%s, %s, %s, '2024-01-02')", ROWS)
        conn.execute("CREATE TABLE audit (note text)")
        conn.execute("CREATE FUNCTION tf_write() RETURNS int LANGUAGE sql AS "
                     "$$ INSERT INTO audit VALUES ('written'); SELECT 1 $$")
    return url


@pytest.fixture(scope="module")
def mysql_url():
    import pymysql

    url, required = _server_url("MYSQL_TEST_URL", "mysql://root@127.0.0.1:3306/", ("mysql", "mariadb"))
    parts = urlsplit(url)
    try:
        admin = pymysql.connect(host=parts.hostname, port=parts.port or 3306, user=parts.username,
                                password=parts.password or "", autocommit=True, connect_timeout=5)
    except pymysql.err.OperationalError as exc:
        if required:
            raise
        pytest.skip(f"MySQL/MariaDB unreachable and MYSQL_TEST_URL unset: {exc}")
    with admin, admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {DB}")
        cursor.execute(f"CREATE DATABASE {DB} CHARACTER SET utf8mb4")
        cursor.execute(f"CREATE TABLE {DB}.qa (id int PRIMARY KEY, question text, answer text, asked date)")
        cursor.executemany(f"INSERT INTO {DB}.qa VALUES (%s, %s, %s, '2024-01-02')", ROWS)
        cursor.execute("CREATE USER IF NOT EXISTS 'tf_reader'@'%' IDENTIFIED BY 'right-pass-123'")
        cursor.execute("ALTER USER 'tf_reader'@'%' IDENTIFIED BY 'right-pass-123'")
        cursor.execute(f"GRANT ALL ON {DB}.* TO 'tf_reader'@'%'")
    return _with_database(url, DB)


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory):
    path = tmp_path_factory.mktemp("sqlite") / "qa.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE qa (id int PRIMARY KEY, question text, answer text, asked date)")
        conn.executemany("INSERT INTO qa VALUES (?, ?, ?, '2024-01-02')", ROWS)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def url(request):
    return request.getfixturevalue(f"{request.param}_url")


def test_it_streams_the_rows_of_a_query_with_locations(url):
    source = SqlSource(url, query="SELECT id, question, answer, asked FROM qa ORDER BY id;", fetch_size=7)
    rows = list(source.records())
    assert len(rows) == 50 and not source.truncated
    assert rows[0].fields == {"id": 1, "question": "question 1", "answer": "answer 1", "asked": "2024-01-02"}
    assert rows[49].location == "row 50" and rows[49].source == redact_url(url)


def test_it_reads_columns_of_a_table(url):
    rows = list(SqlSource(url, table="qa", columns=["question", "answer"]).records())
    assert sorted(r.fields["question"] for r in rows)[:2] == ["question 1", "question 10"]
    assert set(rows[0].fields) == {"question", "answer"}


def test_the_row_limit_stops_the_read_and_says_so(url):
    source = SqlSource(url, query="SELECT id FROM qa ORDER BY id", row_limit=10, fetch_size=3)
    assert [r.fields["id"] for r in source.records()] == list(range(1, 11))
    assert source.truncated


def test_preview_and_test_connection(url):
    source = SqlSource(url, query="SELECT question, answer FROM qa ORDER BY id")
    assert [r.fields["question"] for r in source.preview(3)] == ["question 1", "question 2", "question 3"]
    check = source.test_connection()
    assert check.columns == ["question", "answer"] and check.server_version


@pytest.mark.parametrize("statement", ["INSERT INTO qa VALUES (999, 'q', 'a', '2024-01-01')", "DROP TABLE qa",
                                       "DELETE FROM qa", "UPDATE qa SET answer = 'x'"])
def test_writes_are_refused_and_change_nothing(url, statement):
    with pytest.raises(SourceError) as error:
        list(SqlSource(url, query=statement).records())
    assert redact_url(url) in str(error.value)
    assert len(list(SqlSource(url, query="SELECT answer FROM qa WHERE answer <> 'x'").records())) == 50


def test_the_session_itself_is_read_only(postgresql_url, mysql_url):
    # A function that writes gets past any check of the SQL text; only the session stops it.
    with pytest.raises(SourceError, match="refused by the read-only session.*read-only transaction"):
        list(SqlSource(postgresql_url, query="SELECT tf_write()").records())
    with pytest.raises(SourceError, match="refused by the read-only session"):
        list(SqlSource(mysql_url, query="INSERT INTO qa VALUES (999, 'q', 'a', '2024-01-01')").records())


@pytest.mark.parametrize("dialect, slow_query", [
    ("sqlite", "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"),
    ("postgresql", "SELECT pg_sleep(20)"),
    ("mysql", "SELECT SLEEP(20) FROM qa LIMIT 1"),
])
def test_a_query_past_the_statement_timeout_is_cancelled(request, dialect, slow_query):
    url = request.getfixturevalue(f"{dialect}_url")
    started = time.monotonic()
    with pytest.raises(SourceError, match="ran past the statement timeout of 0.5 s and was cancelled"):
        list(SqlSource(url, query=slow_query, statement_timeout_s=0.5).records())
    assert time.monotonic() - started < 15


def test_a_wrong_password_gives_a_clear_error_without_the_password(mysql_url):
    parts = urlsplit(mysql_url)
    good = urlunsplit(parts._replace(netloc=f"tf_reader:right-pass-123@{parts.hostname}:{parts.port or 3306}"))
    assert SqlSource(good, table="qa").preview(1)
    wrong = good.replace("right-pass-123", "Wr0ng-Secret%21")
    with pytest.raises(SourceError) as error:
        SqlSource(wrong, table="qa").test_connection()
    message = str(error.value)
    assert "could not connect" in message and "Access denied" in message and "tf_reader:***@" in message
    assert "Wr0ng" not in message and "Secret" not in message


def test_postgres_wrong_password(postgresql_url):
    import psycopg

    parts = urlsplit(postgresql_url)
    with psycopg.connect(postgresql_url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS tf_reader")
        conn.execute("CREATE ROLE tf_reader LOGIN PASSWORD 'right-pass-123'")
    wrong = urlunsplit(parts._replace(netloc=f"tf_reader:Wr0ng-Secret@{parts.hostname}:{parts.port or 5432}"))
    try:
        SqlSource(wrong, query="SELECT 1").test_connection()
    except SourceError as error:
        assert "could not connect" in str(error) and "password authentication failed" in str(error)
        assert "Wr0ng" not in str(error)
    else:
        pytest.skip("this PostgreSQL server trusts local connections, so no password is checked")


def test_bad_arguments_are_refused_up_front(sqlite_url, tmp_path):
    with pytest.raises(SourceError, match="either a query or a table"):
        SqlSource(sqlite_url)
    with pytest.raises(SourceError, match="unsupported database URL scheme 'oracle'"):
        SqlSource("oracle://u:p@h/db", table="t")
    with pytest.raises(SourceError, match="no SQLite database file"):
        SqlSource(f"sqlite:///{tmp_path}/missing.db", table="t").preview()
    with pytest.raises(SourceError, match="query failed: no such table: nope"):
        SqlSource(sqlite_url, table="nope").preview()
