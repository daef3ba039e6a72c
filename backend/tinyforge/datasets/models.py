"""Datasets, their immutable versions, and saved connections to SQL databases and Google."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from tinyforge.core.encryption import decrypt_json, encrypt_json
from tinyforge.core.models import EventSubject, TrackedJob, event_links_to, tracked_status
from tinyforge.core.tenancy import TeamOwnedModel


class Dataset(TeamOwnedModel):
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, max_length=5000)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="dataset_unique_name_per_project")]

    def __str__(self) -> str:
        return self.name


class ConnectionKind(models.TextChoices):
    SQL = "sql", "SQL database"
    GOOGLE = "google", "Google Docs / Drive"


class DataConnection(TeamOwnedModel):
    """Saved credentials for a data source. The secret part is encrypted at rest (Fernet) and
    never leaves the server through the API; `options` holds what is safe to show."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="connections")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=ConnectionKind.choices)
    # Safe to display: dialect, host, database name, Google auth type, service-account e-mail.
    options = models.JSONField(default=dict, blank=True)
    encrypted_credentials = models.BinaryField(editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="connection_unique_name_per_project")]

    def __str__(self) -> str:
        return self.name

    def set_credentials(self, credentials: dict) -> None:
        self.encrypted_credentials = encrypt_json(credentials)

    def get_credentials(self) -> dict:
        return decrypt_json(self.encrypted_credentials, f"connection {self.pk}")


class DatasetVersionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    INGESTING = "ingesting", "Ingesting"
    VALIDATING = "validating", "Validating"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class SourceKind(models.TextChoices):
    UPLOAD = "upload", "Uploaded files"
    SQL = "sql", "SQL query"
    GOOGLE_DOCS = "google_docs", "Google Docs"
    OPENAI_FILE = "openai_file", "OpenAI files API"
    DERIVED = "derived", "Derived from another version"
    FEEDBACK = "feedback", "Feedback on deployed answers"


class DatasetVersion(TeamOwnedModel, TrackedJob):
    """One immutable import: a JSONL file under the data directory plus what we know about it."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField(help_text="1, 2, 3... within the dataset")
    note = models.CharField(max_length=500, blank=True)
    status = tracked_status(DatasetVersionStatus, DatasetVersionStatus.PENDING)
    events = EventSubject("dataset_version", kind="ingest", label="Dataset imports")
    source_kind = models.CharField(max_length=16, choices=SourceKind.choices)
    # What to import and how: file keys and names, SQL query and column mapping, document ids,
    # chunking and recipe options. Never secrets (those stay in the connection).
    source_config = models.JSONField(default=dict, blank=True)
    connection = models.ForeignKey(
        DataConnection, null=True, blank=True, on_delete=models.SET_NULL, related_name="versions"
    )
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    storage_key = models.CharField(max_length=500, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    row_count = models.PositiveIntegerField(null=True, blank=True)
    stats = models.JSONField(default=dict, blank=True)
    validation_report = models.JSONField(default=dict, blank=True)
    progress = models.FloatField(default=0.0, help_text="0..1")
    progress_message = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")

    team_path = "dataset__project__team"

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["dataset", "number"], name="version_unique_number_per_dataset")]

    def __str__(self) -> str:
        return f"{self.dataset} v{self.number}"

    def event_links(self) -> dict:
        return {"project_id": self.dataset.project_id, **event_links_to(DatasetVersion, self.pk)}

    @property
    def project(self):
        return self.dataset.project

    @property
    def project_id(self) -> int:
        return self.dataset.project_id
