from django.contrib import admin

from tinyforge.core.models import AuditEvent, Event


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["id", "created_at", "project", "level", "source", "message"]
    list_filter = ["level", "source"]
    search_fields = ["message"]


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "team", "actor", "action", "target_type", "target_repr"]
    list_filter = ["action", "target_type"]

    def has_change_permission(self, request, obj=None):
        return False  # the audit log is a record, not a document
