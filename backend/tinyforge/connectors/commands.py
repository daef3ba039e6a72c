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
    shaping.add_argument("--recipe", choices=["text", "sections", "qa", "knowledge"], default="text",
                         help="documents: recipe")
    shaping.add_argument("--chunk-chars", type=int, default=2000, help="documents: largest chunk in characters")
    shaping.add_argument("--overlap-chars", type=int, default=200, help="documents: overlap between chunks")
    teacher = parser.add_argument_group("teacher (qa and knowledge recipes)")
    teacher.add_argument("--teacher-url", "--qa-base-url", dest="teacher_url",
                         help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    teacher.add_argument("--teacher-model", "--qa-model", dest="teacher_model", help="model name")
    teacher.add_argument("--teacher-api-key-env", "--qa-api-key-env", dest="teacher_api_key_env",
                         default="OPENAI_API_KEY", help="variable holding the API key")
    teacher.add_argument("--teacher-timeout", type=float, default=120.0, help="seconds per request")
    teacher.add_argument("--questions-per-chunk", type=int, default=3, help="qa recipe")
    teacher.add_argument("--facts-per-chunk", type=int, default=8, help="knowledge recipe")
    teacher.add_argument("--questions-per-fact", type=int, default=4,
                         help="knowledge recipe: training questions per fact (one more is held out)")
    teacher.add_argument("--restatements-per-chunk", type=int, default=0, help="knowledge recipe")
    teacher.add_argument("--gap-fills", action=argparse.BooleanOptionalAction, default=True,
                         help="knowledge recipe: a gap-fill row per fact, its key terms blanked out (default: on)")
    teacher.add_argument("--temperature", type=float, default=0.7,
                         help="knowledge recipe: for questions and restatements")
    teacher.add_argument("--concurrency", type=int, default=4, help="knowledge recipe: chunks worked on at once")
    teacher.add_argument("--token-budget", type=int, help="knowledge recipe: stop after this many teacher tokens")
    teacher.add_argument("--eval-out", help="knowledge recipe: held-out fact check file (default: OUTPUT's "
                                            "name with .facts.jsonl)")
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
    from tinyforge.connectors.knowledge import KnowledgeOptions
    from tinyforge.connectors.recipes import QAOptions
    from tinyforge.connectors.teacher import TeacherOptions

    mapping = {}
    for pair in args.map:
        target, sep, name = pair.partition("=")
        if not sep or not name:
            raise TinyforgeError(f"--map {pair!r}: write TARGET=FIELD, e.g. --map output=answer")
        mapping[target.strip()] = name.strip()
    qa = knowledge = None
    if args.recipe in ("qa", "knowledge"):
        if not (args.teacher_url and args.teacher_model):
            raise TinyforgeError(f"--recipe {args.recipe} needs --teacher-url and --teacher-model")
        teacher = dict(base_url=args.teacher_url, model=args.teacher_model, timeout_s=args.teacher_timeout,
                       api_key=os.environ.get(args.teacher_api_key_env) or "none")
        if args.recipe == "qa":
            qa = QAOptions(**teacher, questions_per_chunk=args.questions_per_chunk)
        else:
            knowledge = KnowledgeOptions(TeacherOptions(**teacher), facts_per_chunk=args.facts_per_chunk,
                                         questions_per_fact=args.questions_per_fact,
                                         restatements_per_chunk=args.restatements_per_chunk, gap_fills=args.gap_fills,
                                         temperature=args.temperature, concurrency=args.concurrency,
                                         token_budget=args.token_budget)
    return IngestOptions(mapping=mapping or None, recipe=args.recipe, chunk_chars=args.chunk_chars,
                         overlap_chars=args.overlap_chars, qa=qa, knowledge=knowledge, eval_out=args.eval_out,
                         dedup=not args.no_dedup,
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
            teacher = f", {update.teacher_tokens} teacher tokens" if update.teacher_tokens else ""
            bar.set_postfix_str(f"{update.stage}, {update.records_read} records, {update.examples_written} examples"
                                f"{teacher}")

        report = ingest(source, options, args.output, progress)
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report.to_dict(), f, indent=2, ensure_ascii=False)
    print(f"{report.summary()}; wrote {args.output} (sha256 {report.sha256[:12]}); "
          f"validation: {report.validation.get('summary', '')}")
    for skipped in report.skipped[:5]:
        print(f"  skipped {skipped['source']}, {skipped['location']}: {skipped['reason']}", file=sys.stderr)
    return 0
