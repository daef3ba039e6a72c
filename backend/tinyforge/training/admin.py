from django.contrib import admin

from tinyforge.training.models import Checkpoint, RunMetric, TrainingRun


class CheckpointInline(admin.TabularInline):
    model = Checkpoint
    extra = 0


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "status", "attempt", "base_model", "method", "progress_step", "heartbeat_at"]
    list_filter = ["status", "method"]
    search_fields = ["name", "base_model"]
    readonly_fields = ["job_id", "heartbeat_at", "started_at", "finished_at"]
    inlines = [CheckpointInline]


@admin.register(RunMetric)
class RunMetricAdmin(admin.ModelAdmin):
    list_display = ["run", "attempt", "step", "name", "value"]
    list_filter = ["name"]
