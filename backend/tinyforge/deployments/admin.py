from django.contrib import admin

from tinyforge.deployments.models import Deployment, Export


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "run", "runtime", "status", "request_count", "updated_at"]
    list_filter = ["status", "runtime"]
    search_fields = ["name"]


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    list_display = ["run", "format", "quantize", "status", "size_bytes", "created_at"]
    list_filter = ["status", "format"]
