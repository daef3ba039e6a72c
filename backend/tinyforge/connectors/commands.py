"""`tinyforge ingest`: a file, a database or Google Docs -> a JSONL dataset; see tinyforge/cli.py."""

from __future__ import annotations

import argparse
import json
import os
import sys

from tinyforge.errors import TinyforgeError


def register(subparsers) -> None:
    """Add `ingest` to the `tinyforge` parser."""
    parser = subparsers.add_parser(
        "ingest", help="turn a file, a SQL query or Google Docs into a JSONL dataset",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Read a source, turn its records into training examples, and write them as JSONL. "
                    "SOURCE is a file (txt, md, pdf, docx, csv, json, jsonl) or a database URL "
                    "(sqlite:///file.db, postgresql://..., mysql://...); for Google Docs give --gdoc or "
                    "--gdrive-folder instead.")
    parser.add_argument("source", nargs="?", help="file path or database URL")
    parser.add_argument("-o", "--output", required=True, help="JSONL file to write")
    parser.add_argument("--report", help="also write the ingest report as JSON to this file")
    parser.add_argument("--format", help="file format when the extension does not say it")
    parser.add_argument("--encoding", help="text encoding, when detection guesses wrong")
    parser.add_argument("--pdf-password", default="", help="password of an encrypted PDF")
    sql = parser.add_argument_group("SQL")
    sql.add_argument("--query", help="SELECT statement to read")
    sql.add_argument("--table", help="table to read (instead of --query)")
    sql.add_argument("--columns", help="comma-separated columns of --table (default: all)")
    sql.add_argument("--row-limit", type=int, default=1_000_000, help="most rows to read (0: no limit)")
    sql.add_argument("--statement-timeout", type=float, default=60.0, help="seconds before a query is cancelled")
    sql.add_argument("--database-url-env", metavar="VAR",
                     help="read the database URL from this environment variable (keeps the password out of ps)")
    google = parser.add_argument_group("Google Docs")
    google.add_argument("--gdoc", action="append", default=[], metavar="ID", help="document id (repeatable)")
    google.add_argument("--gdrive-folder", metavar="ID", help="import every Google Doc in this Drive folder")
    google.add_argument("--google-credentials", metavar="JSON",
                        help="service-account key or OAuth authorized-user file")
    google.add_argument("--google-token-env", metavar="VAR", help="environment variable holding an OAuth access token")
    shaping = parser.add_argument_group("examples")
    shaping.add_argument("--map", action="append", default=[], metavar="TARGET=FIELD",
                         help="structured sources: instruction=, input=, output=, metadata=a,b (default: detect "
                              "alpaca, messages, sharegpt, prompt/completion, question/answer)")
    shaping.add_argument("--recipe", choices=["text", "sections", "qa"], default="text", help="documents: recipe")
    shaping.add_argument("--chunk-chars", type=int, default=2000, help="documents: largest chunk in characters")
    shaping.add_argument("--overlap-chars", type=int, default=200, help="documents: overlap between chunks")
    shaping.add_argument("--qa-base-url", help="qa recipe: OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    shaping.add_argument("--qa-model", help="qa recipe: model name")
    shaping.add_argument("--qa-api-key-env", default="OPENAI_API_KEY", help="qa recipe: variable holding the API key")
    shaping.add_argument("--questions-per-chunk", type=int, default=3)
    cleaning = parser.add_argument_group("cleaning")
    cleaning.add_argument("--no-dedup", action="store_true", help="keep exact duplicates")
    cleaning.add_argument("--near-dedup", action=argparse.BooleanOptionalAction, default=None,
                          help="drop near duplicates (default: on for documents, off for structured sources)")
    cleaning.add_argument("--near-threshold", type=float, default=0.85)
    cleaning.add_argument("--scrub-emails", action="store_true", help="replace e-mail addresses with [EMAIL]")
    cleaning.add_argument("--scrub-phones", action="store_true", help="replace phone numbers with [PHONE]")
    cleaning.add_argument("--skip-bad-records", action="store_true",
                          help="skip records that cannot become rows (listed in the report) instead of stopping")
    parser.set_defaults(func=run_ingest)


def _env(name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise TinyforgeError(f"{what}: the environment variable {name} is not set")
    return value


def build_source(args):
    """The connector the arguments describe."""
    from tinyforge.connectors.files import FileSource
    from tinyforge.connectors.gdocs import GoogleDocsSource
    from tinyforge.connectors.pdf import PdfLimits
    from tinyforge.connectors.sql import SqlSource

    url = _env(args.database_url_env, "--database-url-env") if args.database_url_env else None
    if args.gdoc or args.gdrive_folder:
        if args.source or url:
            raise TinyforgeError("give either SOURCE or Google Docs (--gdoc / --gdrive-folder), not both")
        token = _env(args.google_token_env, "--google-token-env") if args.google_token_env else None
        return GoogleDocsSource(args.gdoc, args.gdrive_folder, args.google_credentials, token)
    url = url or (args.source if args.source and "://" in args.source else None)
    if url:
        columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else []
        return SqlSource(url, query=args.query, table=args.table, columns=columns,
                         row_limit=args.row_limit or None, statement_timeout_s=args.statement_timeout)
    if not args.source:
        raise TinyforgeError("give a SOURCE (file or database URL), --database-url-env, --gdoc or --gdrive-folder")
    if args.query or args.table:
        raise TinyforgeError("--query and --table are for database URLs; SOURCE is a file")
    return FileSource(args.source, format=args.format, encoding=args.encoding,
                      pdf_limits=PdfLimits(password=args.pdf_password))


def build_options(args):
    from tinyforge.connectors.pipeline import IngestOptions
    from tinyforge.connectors.recipes import QAOptions

    mapping = {}
    for pair in args.map:
        target, sep, name = pair.partition("=")
        if not sep or not name:
            raise TinyforgeError(f"--map {pair!r}: write TARGET=FIELD, e.g. --map output=answer")
        mapping[target.strip()] = name.strip()
    qa = None
    if args.recipe == "qa":
        if not (args.qa_base_url and args.qa_model):
            raise TinyforgeError("--recipe qa needs --qa-base-url and --qa-model")
        qa = QAOptions(args.qa_base_url, args.qa_model, os.environ.get(args.qa_api_key_env) or "none",
                       args.questions_per_chunk)
    return IngestOptions(mapping=mapping or None, recipe=args.recipe, chunk_chars=args.chunk_chars,
                         overlap_chars=args.overlap_chars, qa=qa, dedup=not args.no_dedup,
                         near_dedup=args.near_dedup, near_threshold=args.near_threshold,
                         scrub_emails=args.scrub_emails, scrub_phones=args.scrub_phones,
                         skip_bad_records=args.skip_bad_records)


def run_ingest(args) -> int:
    from tqdm import tqdm

    from tinyforge.connectors.pipeline import ingest

    source = build_source(args)
    options = build_options(args)
    with tqdm(total=100, unit="%", desc=f"ingest {source.name}", file=sys.stderr,
              disable=not sys.stderr.isatty(), bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}") as bar:
        def progress(update) -> None:
            if update.fraction is not None:
                bar.n = round(update.fraction * 100)
            bar.set_postfix_str(f"{update.stage}, {update.records_read} records, {update.examples_written} examples")

        report = ingest(source, options, args.output, progress)
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report.to_dict(), f, indent=2, ensure_ascii=False)
    print(f"{report.summary()}; wrote {args.output} (sha256 {report.sha256[:12]}); "
          f"validation: {report.validation.get('summary', '')}")
    for skipped in report.skipped[:5]:
        print(f"  skipped {skipped['source']}, {skipped['location']}: {skipped['reason']}", file=sys.stderr)
    return 0
