"""Ingest throughput and memory.

1. Pages/s for a PDF and paragraphs/s for a DOCX: our whole pipeline (extraction in the
   sandboxed child, chunking, recipe, exact and near dedup, schema validation with its report,
   JSONL write) against a bare pypdf / python-docx extraction loop, in the same run, the two
   timed in alternation (best of N each) so that both see the same machine load. Floor: 0.8x.
   CPU seconds (ours: parent plus parsing child) are printed too: on a shared machine they
   say more than wall time about the work each side does.
2. Peak memory (max RSS of a fresh process) while ingesting a large JSONL file and a large SQL
   table (PostgreSQL when reachable, else SQLite). Ceiling: 500 MB.

    python bench/ingest_throughput.py                     # the issue's sizes: 200 pages, 1 GB, 1,000,000 rows
    python bench/ingest_throughput.py --jsonl-mb 100 --sql-rows 100000   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "backend"), str(ROOT / "tests" / "connectors")]

FLOOR, MEMORY_CEILING_MB = 0.8, 500
BENCH_DB = "tf_connectors_bench"
LOREM = ("Maintenance of the pump requires draining the reservoir, checking the seals for wear and "
         "replacing the filter cartridge every six months. Record the pressure before and after. ")


def cpu_seconds() -> float:
    """This process's CPU time plus that of its finished children (the parsing child)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def alternate(runs: int, bare, ours) -> dict:
    """Best wall time and CPU time of each, timed bare, ours, bare, ours..."""
    best = {"bare": (float("inf"), float("inf")), "ours": (float("inf"), float("inf"))}
    for _ in range(runs):
        for name, fn in (("bare", bare), ("ours", ours)):
            started, cpu = time.perf_counter(), cpu_seconds()
            fn()
            wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return {"bare_s": best["bare"][0], "ours_s": best["ours"][0],
            "bare_cpu_s": best["bare"][1], "ours_cpu_s": best["ours"][1]}


def pipeline(path: Path, out: Path) -> None:
    from tinyforge.connectors.files import FileSource
    from tinyforge.connectors.pipeline import IngestOptions, ingest

    ingest(FileSource(path), IngestOptions(), out)


def bench_pdf(folder: Path, pages: int, runs: int) -> dict:
    from pypdf import PdfReader

    from samples import make_pdf

    path = folder / "book.pdf"
    path.write_bytes(make_pdf([[f"Page {p}, line {i}: {LOREM[:80]}" for i in range(50)] for p in range(pages)]))

    def bare() -> None:
        for page in PdfReader(path).pages:
            page.extract_text()

    return {"what": f"PDF, {pages} pages", "unit": "pages/s", "count": pages,
            **alternate(runs, bare, lambda: pipeline(path, folder / "book.jsonl"))}


def bench_docx(folder: Path, paragraphs: int, runs: int) -> dict:
    import docx

    document = docx.Document()
    for i in range(paragraphs):
        if i % 25 == 0:
            document.add_heading(f"Section {i // 25}", level=1 + (i // 25) % 2)
        else:
            document.add_paragraph(f"Paragraph {i}. {LOREM}")
    path = folder / "manual.docx"
    document.save(path)

    def bare() -> None:
        for paragraph in docx.Document(path).paragraphs:
            paragraph.text

    return {"what": f"DOCX, {paragraphs} paragraphs", "unit": "paragraphs/s", "count": paragraphs,
            **alternate(runs, bare, lambda: pipeline(path, folder / "manual.jsonl"))}


def write_jsonl(path: Path, megabytes: int) -> int:
    rows, target = 0, megabytes * 1024 * 1024
    with open(path, "w") as f:
        while f.tell() < target:
            block = "".join(json.dumps({"instruction": f"Explain step {rows + i} of the maintenance plan.",
                                        "output": f"Step {rows + i}: {LOREM * 8}"}) + "\n" for i in range(1000))
            f.write(block)
            rows += 1000
    return rows


def postgres_url() -> str | None:
    try:
        import psycopg

        base = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
        if not base.startswith("postgres"):
            base = "postgresql://postgres@127.0.0.1:5432/postgres"
        with psycopg.connect(base, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {BENCH_DB}")
        return base.rsplit("/", 1)[0] + f"/{BENCH_DB}"
    except Exception:
        return None


def make_table(folder: Path, rows: int) -> str:
    url = postgres_url()
    if url:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE qa AS SELECT i AS id, 'What is step ' || i || '?' AS question, "
                         f"'Step ' || i || ': ' || repeat('{LOREM}', 2) AS answer FROM generate_series(1, {rows}) i")
        return url
    import sqlite3

    path = folder / "bench.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE qa (id int, question text, answer text)")
        conn.executemany("INSERT INTO qa VALUES (?, ?, ?)",
                         ((i, f"What is step {i}?", f"Step {i}: {LOREM * 2}") for i in range(1, rows + 1)))
    return f"sqlite:///{path}"


def child(kind: str, target: str, out: str, rows: int) -> None:
    """Run in a fresh process: ingest, then print the peak RSS and the report's counts."""
    from tinyforge.connectors.files import FileSource
    from tinyforge.connectors.pipeline import IngestOptions, ingest
    from tinyforge.connectors.sql import SqlSource

    if kind == "jsonl":
        source = FileSource(target)
    else:
        source = SqlSource(target, query="SELECT question, answer FROM qa ORDER BY id", row_limit=rows,
                           statement_timeout_s=600)
    options = IngestOptions(mapping={"instruction": "question", "output": "answer"} if kind == "sql" else None)
    started = time.perf_counter()
    report = ingest(source, options, out)
    print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "rows": report.examples_written, "seconds": time.perf_counter() - started}))


def measure(kind: str, target: str, out: Path, rows: int = 0) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", kind, target, str(out), str(rows)],
                            capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"{kind} child failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pdf-pages", type=int, default=200)
    parser.add_argument("--docx-paragraphs", type=int, default=20000)
    parser.add_argument("--jsonl-mb", type=int, default=1024)
    parser.add_argument("--sql-rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5, help="best of N for the throughput figures")
    parser.add_argument("--child", nargs=4, metavar=("KIND", "TARGET", "OUT", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, target, out, rows = args.child
        child(kind, target, out, int(rows))
        return 0

    from tinyforge.hardware import machine_summary

    print(machine_summary(), flush=True)
    failures = []
    with tempfile.TemporaryDirectory(prefix="tf-ingest-bench-") as tmp:
        folder = Path(tmp)
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"{'input':<28} {'bare extraction':>20} {'tinyforge pipeline':>20} {'ratio':>7}   "
              f"{'CPU s: bare':>11} {'ours':>6} {'ratio':>7}")
        for result in (bench_pdf(folder, args.pdf_pages, args.runs), bench_docx(folder, args.docx_paragraphs, args.runs)):
            ratio = result["bare_s"] / result["ours_s"]
            unit = result["unit"]
            print(f"{result['what']:<28} {result['count'] / result['bare_s']:>7.0f} {unit:<12} "
                  f"{result['count'] / result['ours_s']:>7.0f} {unit:<12} {ratio:>6.2f}x   "
                  f"{result['bare_cpu_s']:>11.2f} {result['ours_cpu_s']:>6.2f} "
                  f"{result['bare_cpu_s'] / result['ours_cpu_s']:>6.2f}x")
            if ratio < FLOOR:
                failures.append(f"{result['what']}: {ratio:.2f}x is under the {FLOOR}x floor")

        jsonl = folder / "big.jsonl"
        jsonl_rows = write_jsonl(jsonl, args.jsonl_mb)
        table_url = make_table(folder, args.sql_rows)
        print(f"\n{'input':<40} {'rows':>10} {'seconds':>8} {'peak RSS':>10}")
        for label, kind, target, rows in (
                (f"JSONL, {jsonl.stat().st_size / 2**20:,.0f} MB", "jsonl", str(jsonl), jsonl_rows),
                (f"SQL table ({table_url.split(':')[0]}), {args.sql_rows:,} rows", "sql", table_url, args.sql_rows)):
            result = measure(kind, target, folder / f"{kind}.out.jsonl", rows)
            (folder / f"{kind}.out.jsonl").unlink(missing_ok=True)
            print(f"{label:<40} {result['rows']:>10,} {result['seconds']:>8.1f} {result['peak_mb']:>7.0f} MB")
            if result["peak_mb"] > MEMORY_CEILING_MB:
                failures.append(f"{label}: peak {result['peak_mb']:.0f} MB is over {MEMORY_CEILING_MB} MB")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    for failure in failures:
        print("FAIL:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
