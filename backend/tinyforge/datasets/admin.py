from django.contrib import admin

from tinyforge.datasets.models import DataConnection, Dataset, DatasetVersion


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "created_at"]
    search_fields = ["name"]


@admin.register(DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):
    list_display = ["dataset", "number", "status", "source_kind", "row_count", "created_at"]
    list_filter = ["status", "source_kind"]
    readonly_fields = ["sha256", "storage_key", "job_id", "heartbeat_at"]


@admin.register(DataConnection)
class DataConnectionAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "project", "created_at"]
    exclude = ["encrypted_credentials"]
