import codecs
import json
from urllib.parse import urlsplit

from rest_framework import serializers

from tinyforge import bounded_json
from tinyforge.connectors.files import FORMATS
from tinyforge.connectors.mapping import FieldMapping
from tinyforge.connectors import knowledge
from tinyforge.connectors.recipes import RECIPES
from tinyforge.connectors.records import SourceError
from tinyforge.core.api import CleanJSONField, StrictModelSerializer, StrictSerializer
from tinyforge.datasets.importing import (
    connection_options,
    google_api_root_allowed,
    google_token_uri_allowed,
    qa_api_key,
)
from tinyforge.datasets.models import (
    ConnectionKind,
    DataConnection,
    Dataset,
    DatasetVersion,
    DatasetVersionStatus,
    SourceKind,
)
from tinyforge.errors import TinyforgeError
from tinyforge.training import base_models
from tinyforge.training.base_models import BaseModelField


class DatasetSerializer(StrictModelSerializer):
    latest_version = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = ["id", "project", "name", "description", "latest_version", "created_by", "created_at", "updated_at"]
        read_only_fields = ["created_by"]

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None and not isinstance(self.instance, list):
            fields["project"].read_only = True
        return fields

    def get_latest_version(self, dataset) -> int | None:
        latest = dataset.versions.order_by("-number").values_list("id", flat=True).first()
        return latest


class DatasetVersionSerializer(StrictModelSerializer):
    project = serializers.IntegerField(source="dataset.project_id", read_only=True)

    class Meta:
        model = DatasetVersion
        fields = [
            "id", "dataset", "project", "number", "note", "status", "source_kind", "source_config", "connection",
            "parent", "sha256", "size_bytes", "row_count", "stats", "validation_report", "error", "progress",
            "progress_message", "heartbeat_at", "started_at", "finished_at", "created_by", "created_at",
        ]
        read_only_fields = [
            "number", "status", "sha256", "size_bytes", "row_count", "stats", "validation_report", "error",
            "progress", "progress_message", "heartbeat_at", "started_at", "finished_at", "created_by",
        ]

    def validate(self, attrs):
        dataset = attrs["dataset"]
        for name in ("connection", "parent"):
            other = attrs.get(name)
            other_project = getattr(other, "project_id", None) if name == "connection" else (
                other.dataset.project_id if other else None)
            if other is not None and other_project != dataset.project_id:
                raise serializers.ValidationError({name: ["Must belong to the dataset's project."]})
        kind, connection, parent = attrs["source_kind"], attrs.get("connection"), attrs.get("parent")
        if kind == SourceKind.UPLOAD:
            raise serializers.ValidationError({"source_kind": ["Upload files with POST /api/v1/datasets/{id}/upload/."]})
        if kind == SourceKind.OPENAI_FILE:
            raise serializers.ValidationError({"source_kind": ["Made by the OpenAI files API (/v1/files)."]})
        if kind == SourceKind.FEEDBACK:
            raise serializers.ValidationError({"source_kind": ["Make it from feedback with POST "
                                                               "/api/v1/feedback/dataset-version/."]})
        needed = {SourceKind.SQL: ConnectionKind.SQL, SourceKind.GOOGLE_DOCS: ConnectionKind.GOOGLE}.get(kind)
        if needed and (connection is None or connection.kind != needed):
            raise serializers.ValidationError({"connection": [f"A {kind} import needs a saved {needed} connection."]})
        if kind == SourceKind.DERIVED and (parent is None or parent.status != DatasetVersionStatus.READY):
            raise serializers.ValidationError({"parent": ["A derived version needs a ready parent version."]})
        config = SOURCE_CONFIG_SERIALIZERS[kind](data=attrs.get("source_config") or {},
                                                 context={"team_id": dataset.project.team_id})
        if not config.is_valid():
            raise serializers.ValidationError({"source_config": config.errors})
        attrs["source_config"] = json.loads(json.dumps(config.validated_data))
        return attrs


class UploadSerializer(serializers.Serializer):
    files = serializers.ListField(child=serializers.FileField(), allow_empty=False, max_length=100)
    note = serializers.CharField(required=False, allow_blank=True, max_length=500)
    # A default, so that the options' own defaults (skip_bad_records) apply when none are sent.
    options = CleanJSONField(required=False, default=dict, help_text="Import options as a JSON object: mapping, "
                             "recipe, chunk_chars, overlap_chars, dedup, scrub_emails, skip_bad_records (default "
                             "true: bad rows are skipped and listed; false: stop at the first), base_model... "
                             "(see UploadOptions)")

    def validate_options(self, value):
        options = UploadOptionsSerializer(data=value if value is not None else {}, context=self.context)
        if not options.is_valid():
            raise serializers.ValidationError(options.errors)
        return json.loads(json.dumps(options.validated_data))


class DataConnectionSerializer(StrictModelSerializer):
    credentials = CleanJSONField(
        write_only=True, help_text="Secret part (password or connection URL, Google key). Stored encrypted, never returned."
    )

    class Meta:
        model = DataConnection
        fields = ["id", "project", "name", "kind", "options", "credentials", "created_by", "created_at", "updated_at"]
        read_only_fields = ["created_by"]

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None and not isinstance(self.instance, list):
            fields["project"].read_only = True
            fields["credentials"].required = False
        return fields

    def validate_credentials(self, value):
        if not isinstance(value, dict) or not value:
            raise serializers.ValidationError("Must be a non-empty JSON object.")
        return value

    def validate(self, attrs):
        kind = attrs.get("kind") or getattr(self.instance, "kind", None)
        if self.instance is not None and "kind" in attrs and attrs["kind"] != self.instance.kind:
            raise serializers.ValidationError({"kind": ["A connection's kind cannot change; save a new connection."]})
        options = attrs.get("options", getattr(self.instance, "options", None) or {})
        user_options = {k: v for k, v in options.items() if k in CONNECTION_USER_OPTIONS.get(kind, ())}
        if self.instance is None or "options" in attrs:
            unknown = sorted(set(options) - set(CONNECTION_USER_OPTIONS.get(kind, ())))
            if unknown:
                raise serializers.ValidationError({"options": [f"Unknown option(s) {unknown}; the rest is derived "
                                                               "from the credentials."]})
        if "api_root" in user_options:
            api_root = user_options["api_root"]
            if not isinstance(api_root, str) or urlsplit(api_root).scheme not in ("http", "https"):
                raise serializers.ValidationError({"options": {"api_root": ["Must be an http(s) URL."]}})
            if self.instance is None or "options" in attrs:
                try:
                    google_api_root_allowed(api_root)
                except TinyforgeError as exc:
                    raise serializers.ValidationError({"options": {"api_root": [str(exc)]}}) from None
        credentials = attrs.get("credentials")
        if credentials is not None:
            attrs["credentials"] = credentials = _checked_credentials(kind, credentials)
            attrs["options"] = {**user_options, **connection_options(kind, credentials)}
        elif "options" in attrs:
            derived = {k: v for k, v in (self.instance.options or {}).items() if k not in CONNECTION_USER_OPTIONS[kind]}
            attrs["options"] = {**user_options, **derived}
        return attrs


# Options a user sets on a connection; the others are derived from its credentials.
CONNECTION_USER_OPTIONS = {ConnectionKind.SQL: (), ConnectionKind.GOOGLE: ("api_root",)}


def _checked_credentials(kind: str, credentials: dict) -> dict:
    """The credentials in their stored form, or a 400 saying what is missing."""
    def invalid(message: str):
        return serializers.ValidationError({"credentials": [message]})

    if kind == ConnectionKind.SQL:
        url = credentials.get("url")
        if set(credentials) != {"url"} or not isinstance(url, str):
            raise invalid('Give {"url": "postgresql://user:password@host:5432/db"} (or mysql://..., sqlite:///path).')
        scheme = urlsplit(url).scheme.split("+")[0].lower()
        if scheme not in ("sqlite", "postgres", "postgresql", "mysql", "mariadb"):
            raise invalid(f"Unsupported database URL scheme {scheme!r}: use postgresql://, mysql:// or sqlite:///.")
        return {"url": url}
    names = {"service_account_json", "authorized_user_json", "oauth_token"}
    given = [name for name in names if credentials.get(name)]
    if len(given) != 1 or set(credentials) - names:
        raise invalid("Give exactly one of service_account_json (the key file's JSON), authorized_user_json "
                      "or oauth_token.")
    name = given[0]
    value = credentials[name]
    if name == "oauth_token":
        if not isinstance(value, str):
            raise invalid("oauth_token must be a string.")
        return {name: value}
    if isinstance(value, str):
        try:
            value = bounded_json.loads(value)
        except ValueError:
            raise invalid(f"{name} is not valid JSON.") from None
    expected = "service_account" if name == "service_account_json" else "authorized_user"
    if not isinstance(value, dict) or value.get("type") != expected:
        raise invalid(f'{name} must be a JSON key of "type": "{expected}".')
    if "token_uri" in value:
        try:
            google_token_uri_allowed(value["token_uri"])
        except TinyforgeError as exc:
            raise serializers.ValidationError({"credentials": {name: {"token_uri": [str(exc)]}}}) from None
    return {name: value}


# -- imports: options, sources, connection probes -------------------------------------------

class QAOptionsSerializer(StrictSerializer):
    base_url = serializers.URLField(help_text="OpenAI-compatible base URL: the platform's inference service "
                                              "(TINYFORGE_INFERENCE_URL + /v1) or one listed in TINYFORGE_QA_BASE_URLS")
    model = serializers.CharField(max_length=200)
    questions_per_chunk = serializers.IntegerField(min_value=1, max_value=20, required=False)

    def validate_base_url(self, value):
        try:
            qa_api_key(value)
        except TinyforgeError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value


class KnowledgePromptsSerializer(StrictSerializer):
    facts = serializers.CharField(max_length=4000, required=False, help_text=f"Default: {knowledge.FACTS_PROMPT}")
    questions = serializers.CharField(max_length=4000, required=False,
                                      help_text=f"Default: {knowledge.QUESTIONS_PROMPT}")
    answers = serializers.CharField(max_length=4000, required=False, help_text=f"Default: {knowledge.ANSWERS_PROMPT}")
    restatements = serializers.CharField(max_length=4000, required=False,
                                         help_text=f"Default: {knowledge.RESTATEMENTS_PROMPT}")


class KnowledgeOptionsSerializer(QAOptionsSerializer):
    """The teacher of the knowledge recipe and its knobs (connectors.knowledge.KnowledgeOptions)."""

    questions_per_chunk = None
    facts_per_chunk = serializers.IntegerField(min_value=1, max_value=50, required=False, help_text="Default 8")
    questions_per_fact = serializers.IntegerField(min_value=1, max_value=20, required=False,
                                                  help_text="Training questions per fact (one more is held out). Default 4")
    restatements_per_chunk = serializers.IntegerField(min_value=0, max_value=20, required=False, help_text="Default 0")
    gap_fills = serializers.BooleanField(required=False, help_text="A gap-fill row per fact (its key terms blanked "
                                         "out, answered by the fact; no teacher call). Default true")
    temperature = serializers.FloatField(min_value=0.0, max_value=2.0, required=False,
                                         help_text="For questions and restatements. Default 0.7")
    prompts = KnowledgePromptsSerializer(required=False, help_text="The teacher's instructions, to replace the defaults")
    concurrency = serializers.IntegerField(min_value=1, max_value=32, required=False,
                                           help_text="Chunks worked on at once. Default 4")
    token_budget = serializers.IntegerField(min_value=1, max_value=10**12, required=False, allow_null=True,
                                            help_text="Teacher tokens after which the import stops with what it has")


class ImportOptionsSerializer(StrictSerializer):
    """How records become rows (see connectors.pipeline.IngestOptions) and which base model's
    tokenizer measures the rows. Every field is optional."""

    mapping = CleanJSONField(required=False, help_text='Structured sources: {"instruction": column, "output": '
                             'column, "input": column, "metadata": [columns]}; omitted: detected')
    recipe = serializers.ChoiceField(choices=RECIPES, required=False,
                                     help_text="Documents: text (chunks), sections (heading -> section), qa or "
                                               "knowledge (facts -> many grounded questions, and a fact check)")
    chunk_chars = serializers.IntegerField(min_value=100, max_value=100_000, required=False)
    overlap_chars = serializers.IntegerField(min_value=0, max_value=50_000, required=False)
    qa = QAOptionsSerializer(required=False, help_text="The model that writes question/answer pairs (recipe qa)")
    knowledge = KnowledgeOptionsSerializer(required=False, help_text="The teacher and knobs of the knowledge recipe")
    dedup = serializers.BooleanField(required=False)
    near_dedup = serializers.BooleanField(required=False, allow_null=True)
    near_threshold = serializers.FloatField(min_value=0.5, max_value=1.0, required=False)
    scrub_emails = serializers.BooleanField(required=False)
    scrub_phones = serializers.BooleanField(required=False)
    skip_bad_records = serializers.BooleanField(
        required=False, help_text="true: a record that cannot become a row (a ragged CSV line, a field of the wrong type) "
                                  "is skipped and listed with its line and reason in the version's report; false: the "
                                  "first one fails the import. Default: false, true for uploads")
    base_model = BaseModelField(required=False, allow_blank=True,
                                help_text="Its tokenizer measures token lengths for the validation report. "
                                          + base_models.HELP)
    max_seq_length = serializers.IntegerField(min_value=8, max_value=1_000_000, required=False,
                                              help_text="Context length for 'rows over context' (default: the model's)")

    def validate_mapping(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be an object of target field -> source field.")
        try:
            FieldMapping.parse(value)
        except TinyforgeError as exc:
            raise serializers.ValidationError(exc.problem if isinstance(exc, SourceError) else str(exc)) from None
        return value

    def validate(self, attrs):
        chunk, overlap = attrs.get("chunk_chars", 2000), attrs.get("overlap_chars", 200)
        if overlap >= chunk:
            raise serializers.ValidationError({"overlap_chars": ["Must be smaller than chunk_chars."]})
        if attrs.get("recipe") == "qa" and not attrs.get("qa"):
            raise serializers.ValidationError({"qa": ["The qa recipe needs the model that writes the questions."]})
        if attrs.get("recipe") == "knowledge" and not attrs.get("knowledge"):
            raise serializers.ValidationError({"knowledge": ["The knowledge recipe needs its teacher (base_url, model)."]})
        return attrs


class UploadOptionsSerializer(ImportOptionsSerializer):
    # Uploaded files are where bad rows turn up; the rest of such a file is imported, the bad rows listed.
    skip_bad_records = serializers.BooleanField(
        default=True, help_text="true (the default): a record that cannot become a row is skipped and listed with its "
                                "line and reason in the version's report; false: stop at the first bad row")
    format = serializers.ChoiceField(choices=FORMATS, required=False,
                                     help_text="File format when the extension does not say it")
    encoding = serializers.CharField(max_length=40, required=False,
                                     help_text="Text encoding, when detection guesses wrong")

    def validate_encoding(self, value):
        try:
            codecs.lookup(value)
        except LookupError:
            raise serializers.ValidationError(f"Unknown text encoding {value!r}.") from None
        return value


class SqlSourceSerializer(ImportOptionsSerializer):
    query = serializers.CharField(required=False, max_length=100_000, help_text="A SELECT statement")
    table = serializers.CharField(required=False, max_length=300, help_text="A table (instead of query)")
    columns = serializers.ListField(child=serializers.CharField(max_length=300), required=False,
                                    help_text="Columns of the table (default: all)")
    row_limit = serializers.IntegerField(min_value=1, max_value=100_000_000, required=False)
    statement_timeout_s = serializers.FloatField(min_value=0.1, max_value=86_400, required=False)

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if bool(attrs.get("query", "").strip()) == bool(attrs.get("table", "").strip()):
            raise serializers.ValidationError({"query": ["Give either a query or a table, not both."]})
        if attrs.get("columns") and not attrs.get("table"):
            raise serializers.ValidationError({"columns": ["Columns go with a table."]})
        return attrs


class GoogleDocsSourceSerializer(ImportOptionsSerializer):
    document_ids = serializers.ListField(child=serializers.RegexField(r"^[A-Za-z0-9_-]{1,200}$"), required=False,
                                         max_length=1000)
    folder_id = serializers.RegexField(r"^[A-Za-z0-9_-]{1,200}$", required=False, allow_blank=True,
                                       help_text="Import every Google Doc in this Drive folder")

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if not attrs.get("document_ids") and not attrs.get("folder_id"):
            raise serializers.ValidationError({"document_ids": ["Give document ids or a Drive folder id."]})
        return attrs


SOURCE_CONFIG_SERIALIZERS = {
    SourceKind.SQL: SqlSourceSerializer,
    SourceKind.GOOGLE_DOCS: GoogleDocsSourceSerializer,
    SourceKind.DERIVED: ImportOptionsSerializer,
}


class ConnectionProbeSerializer(StrictSerializer):
    """What to try a connection with: a SQL query (or table) or Google document ids."""

    query = serializers.CharField(required=False, max_length=100_000)
    table = serializers.CharField(required=False, max_length=300)
    columns = serializers.ListField(child=serializers.CharField(max_length=300), required=False)
    statement_timeout_s = serializers.FloatField(min_value=0.1, max_value=600, required=False)
    mapping = CleanJSONField(required=False, help_text="Show the rows mapped to examples with this mapping")
    document_ids = serializers.ListField(child=serializers.RegexField(r"^[A-Za-z0-9_-]{1,200}$"), required=False,
                                         max_length=20)
    folder_id = serializers.RegexField(r"^[A-Za-z0-9_-]{1,200}$", required=False, allow_blank=True)
    limit = serializers.IntegerField(min_value=1, max_value=100, default=20)

    validate_mapping = ImportOptionsSerializer.validate_mapping


class ConnectionTestResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    message = serializers.CharField()
    dialect = serializers.CharField(allow_null=True)
    server_version = serializers.CharField(allow_null=True)
    columns = serializers.ListField(child=serializers.CharField())


class ConnectionPreviewSerializer(serializers.Serializer):
    columns = serializers.ListField(child=serializers.CharField())
    rows = serializers.ListField(child=serializers.DictField(), help_text="The first rows, column -> value")
    shape = serializers.CharField(allow_null=True, help_text="The mapping used or the shape detected")
    examples = serializers.ListField(child=serializers.DictField(), help_text="The rows as dataset rows")
    mapping_error = serializers.CharField(allow_null=True, help_text="Why the rows do not map, if they do not")


# -- version reports ------------------------------------------------------------------------

class TokenHistogramSerializer(serializers.Serializer):
    edges = serializers.ListField(child=serializers.IntegerField(), help_text="Bucket edges in tokens (n + 1)")
    counts = serializers.ListField(child=serializers.IntegerField(), help_text="Rows per bucket (n)")
    count = serializers.IntegerField()
    min = serializers.IntegerField(allow_null=True)
    max = serializers.IntegerField(allow_null=True)
    mean = serializers.FloatField(allow_null=True)
    p50 = serializers.IntegerField(allow_null=True)
    p95 = serializers.IntegerField(allow_null=True)
    max_seq_length = serializers.IntegerField(allow_null=True)


class RowProblemSerializer(serializers.Serializer):
    line = serializers.IntegerField(allow_null=True, help_text="Line in the version's file; for a row the import "
                                    "refused, its line in the source, or null where the source has no lines")
    field = serializers.CharField()
    reason = serializers.CharField()
    source = serializers.CharField(required=False, allow_null=True,
                                   help_text="A row the import refused: the file (or query) it came from")
    location = serializers.CharField(required=False, allow_null=True,
                                     help_text='A row the import refused: where in its source ("line 3", "row 17")')


class ValidationReportSerializer(serializers.Serializer):
    ok = serializers.BooleanField(help_text="Training can use it: a valid row that fits the context")
    summary = serializers.CharField()
    total_rows = serializers.IntegerField()
    valid_rows = serializers.IntegerField()
    usable_rows = serializers.IntegerField()
    invalid_count = serializers.IntegerField()
    invalid = RowProblemSerializer(many=True, help_text="The first 1,000 problems, by line")
    duplicate_count = serializers.IntegerField()
    duplicates = serializers.ListField(child=serializers.DictField(child=serializers.IntegerField()),
                                       help_text='{"line", "duplicate_of"}')
    empty_output_count = serializers.IntegerField()
    empty_outputs = serializers.ListField(child=serializers.IntegerField(), help_text="Line numbers")
    over_context_count = serializers.IntegerField()
    over_context = serializers.ListField(child=serializers.DictField(child=serializers.IntegerField()),
                                         help_text='{"line", "tokens"}')
    max_seq_length = serializers.IntegerField(allow_null=True)
    base_model = serializers.CharField(allow_null=True)
    token_histogram = TokenHistogramSerializer(allow_null=True)


class ReportQuerySerializer(StrictSerializer):
    base_model = BaseModelField(required=False, allow_blank=True)
    max_seq_length = serializers.IntegerField(min_value=8, max_value=1_000_000, required=False)


class PreviewQuerySerializer(ReportQuerySerializer):
    page = serializers.IntegerField(min_value=1, max_value=10**9, default=1)
    page_size = serializers.IntegerField(min_value=1, max_value=50, default=10)
    source = serializers.CharField(max_length=500, required=False, allow_blank=True,
                                   help_text="Only rows from this document (metadata.source)")
    fact = serializers.CharField(max_length=2000, required=False, allow_blank=True,
                                 help_text="Only rows about this fact (metadata.fact_id or metadata.fact): the "
                                           "knowledge recipe's questions of one fact")


class PreviewSegmentSerializer(serializers.Serializer):
    text = serializers.CharField()
    trained = serializers.BooleanField(help_text="True where the model is trained on these tokens")
    tokens = serializers.IntegerField()


class PreviewRowSerializer(serializers.Serializer):
    line = serializers.IntegerField()
    valid = serializers.BooleanField()
    row = serializers.JSONField(help_text="The row (an invalid line: its text)")
    problems = serializers.ListField(child=serializers.DictField(child=serializers.CharField()))
    segments = PreviewSegmentSerializer(many=True, required=False,
                                        help_text="With base_model: the rendered chat template, in spans")
    rejected_segments = PreviewSegmentSerializer(
        many=True, required=False, help_text="A preference pair with base_model: the prompt with the rejected answer, "
                                             "in spans (segments hold it with the chosen one)")
    rendered = serializers.CharField(required=False)
    token_count = serializers.IntegerField(required=False)
    trained_token_count = serializers.IntegerField(required=False)
    over_context = serializers.BooleanField(required=False)


class VersionPreviewSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    page = serializers.IntegerField()
    page_size = serializers.IntegerField()
    next = serializers.CharField(allow_null=True)
    previous = serializers.CharField(allow_null=True)
    base_model = serializers.CharField(allow_null=True)
    max_seq_length = serializers.IntegerField(allow_null=True)
    results = PreviewRowSerializer(many=True)


class DiffQuerySerializer(StrictSerializer):
    against = serializers.IntegerField(min_value=1, help_text="The version to compare with (usually an older one)")
    limit = serializers.IntegerField(min_value=0, max_value=1000, default=100)


class DiffRowSerializer(serializers.Serializer):
    line = serializers.IntegerField()
    row = serializers.JSONField()


class VersionDiffSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    against = serializers.IntegerField()
    added_count = serializers.IntegerField(help_text="Rows in version that are not in against")
    removed_count = serializers.IntegerField(help_text="Rows in against that are not in version")
    unchanged_count = serializers.IntegerField()
    added = DiffRowSerializer(many=True, help_text="The first `limit` added rows, with their line in version")
    removed = DiffRowSerializer(many=True, help_text="The first `limit` removed rows, with their line in against")


class KnowledgePreviewSerializer(UploadSerializer):
    """A dry run of the knowledge recipe on the first chunks of the files, before an import."""

    files = serializers.ListField(child=serializers.FileField(), allow_empty=False, max_length=20)
    note = None
    chunks = serializers.IntegerField(min_value=1, max_value=5, default=3, help_text="How many chunks the teacher works on")

    def validate_options(self, value):
        options = super().validate_options(value)
        if options.get("recipe") != "knowledge":
            raise serializers.ValidationError({"recipe": ['The dry run is of the knowledge recipe: give "recipe": '
                                                          '"knowledge" and its "knowledge" options.']})
        return options


class KnowledgeDefaultsSerializer(serializers.Serializer):
    facts_per_chunk = serializers.IntegerField()
    questions_per_fact = serializers.IntegerField()
    restatements_per_chunk = serializers.IntegerField()
    gap_fills = serializers.BooleanField()
    temperature = serializers.FloatField()
    concurrency = serializers.IntegerField()


class KnowledgeOptionsInfoSerializer(serializers.Serializer):
    teachers = serializers.ListField(child=serializers.CharField(), help_text="Base URLs a teacher may have here "
                                     "(the platform's inference service first, then TINYFORGE_QA_BASE_URLS)")
    own_inference_url = serializers.CharField(help_text="The platform's inference service: its models are the "
                                                        "team's deployments, by name")
    prompts = KnowledgePromptsSerializer(help_text="The default prompts")
    defaults = KnowledgeDefaultsSerializer()


class KnowledgeEstimateSerializer(serializers.Serializer):
    chunks = serializers.IntegerField()
    characters = serializers.IntegerField()
    teacher_calls = serializers.IntegerField()
    teacher_tokens = serializers.IntegerField(help_text="Rough: about four characters a token")
    training_rows_at_most = serializers.IntegerField()


class KnowledgePreviewResultSerializer(serializers.Serializer):
    estimate = KnowledgeEstimateSerializer(help_text="For the whole import")
    rows = serializers.ListField(child=serializers.JSONField(), help_text="Training rows the dry run kept")
    heldout = serializers.ListField(child=serializers.JSONField(), help_text="Fact-check questions (eval rows)")
    stats = serializers.JSONField(help_text="Counts: facts, rows kept and dropped (with reasons), failed chunks, "
                                            "teacher calls and tokens")
