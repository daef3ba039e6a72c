from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins

from tinyforge.core.access import require_role
from tinyforge.core.api import TeamScopedViewSet
from tinyforge.core.roles import Role
from tinyforge.core.schema import OBJECT_ERRORS, READ_ERRORS, WRITE_ERRORS
from tinyforge.projects import services
from tinyforge.projects.filters import ProjectFilter
from tinyforge.projects.models import Project
from tinyforge.projects.serializers import ProjectSerializer


@extend_schema_view(
    list=extend_schema(summary="Projects of your teams", responses={200: ProjectSerializer(many=True), **READ_ERRORS}),
    retrieve=extend_schema(summary="One project", responses={200: ProjectSerializer, **OBJECT_ERRORS}),
    create=extend_schema(summary="Create a project in a team", responses={201: ProjectSerializer, **WRITE_ERRORS}),
    partial_update=extend_schema(summary="Rename or describe a project", responses={200: ProjectSerializer, **WRITE_ERRORS}),
    destroy=extend_schema(summary="Delete a project and everything in it (admin or owner)", responses={204: None, **OBJECT_ERRORS}),
)
class ProjectViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                     mixins.UpdateModelMixin, mixins.DestroyModelMixin, TeamScopedViewSet):
    model = Project
    serializer_class = ProjectSerializer
    filterset_class = ProjectFilter
    ordering_fields = ["name", "created_at", "updated_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_permissions(self):
        if self.action == "destroy":
            self.write_role = Role.ADMIN
        return super().get_permissions()

    def perform_create(self, serializer):
        team = serializer.validated_data["team"]
        require_role(self.request, team.pk, Role.MEMBER, action="create projects")
        serializer.instance = services.create_project(
            self.request, team=team, name=serializer.validated_data["name"],
            description=serializer.validated_data.get("description", ""),
        )

    def perform_update(self, serializer):
        serializer.instance = services.update_project(self.request, serializer.instance, serializer.validated_data)

    def perform_destroy(self, instance):
        services.delete_project(self.request, instance)
