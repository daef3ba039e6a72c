from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.response import Response

from tinyforge.accounts.models import Role
from tinyforge.core.access import require_role
from tinyforge.core.api import TeamScopedViewSet, parse_id
from tinyforge.core.audit import audit
from tinyforge.core.schema import OBJECT_ERRORS, READ_ERRORS, WRITE_ERRORS
from tinyforge.tracking.filters import TrackedRunFilter
from tinyforge.tracking.models import TeamTracking, TrackedRun
from tinyforge.tracking.serializers import TeamTrackingSerializer, TrackedRunSerializer


class TeamTrackingViewSet(viewsets.GenericViewSet):
    """/tracking-settings/<team id>/: the team's MLflow and W&B settings. Every member reads them
    (secrets never leave the server); only owners change them."""

    serializer_class = TeamTrackingSerializer
    queryset = TeamTracking.all_teams.none()  # for the schema; rows are found by team below
    lookup_field = "team"

    def _settings(self, minimum: str, action: str) -> TeamTracking:
        team_id = parse_id(self.kwargs["team"], "team")
        require_role(self.request, team_id, minimum, action=action)
        return TeamTracking.objects.for_team(team_id).first() or TeamTracking(team_id=team_id)

    @extend_schema(summary="A team's experiment trackers (MLflow, W&B); empty values use the server-wide ones",
                   responses={200: TeamTrackingSerializer, **OBJECT_ERRORS})
    def retrieve(self, request, team=None):
        return Response(TeamTrackingSerializer(self._settings(Role.VIEWER, "read tracking settings")).data)

    @extend_schema(summary="Set a team's experiment trackers (owner only); secrets left out are kept",
                   request=TeamTrackingSerializer, responses={200: TeamTrackingSerializer, **WRITE_ERRORS})
    def update(self, request, team=None):
        instance = self._settings(Role.OWNER, "change experiment tracking")
        serializer = TeamTrackingSerializer(instance, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        created = instance.pk is None
        serializer.save_to(instance)
        changed = sorted(serializer.validated_data)
        audit(request, "created" if created else "updated", instance, changes={"fields": changed})
        return Response(TeamTrackingSerializer(instance).data)

    @extend_schema(summary="Remove a team's own trackers (owner only); the server-wide ones apply again",
                   responses={204: None, **OBJECT_ERRORS})
    def destroy(self, request, team=None):
        instance = self._settings(Role.OWNER, "change experiment tracking")
        if instance.pk is not None:
            audit(request, "deleted", instance)
            instance.delete()
        return Response(status=204)


@extend_schema_view(
    list=extend_schema(summary="Where runs were mirrored: their MLflow and W&B runs (filter by run)",
                       responses={200: TrackedRunSerializer(many=True), **READ_ERRORS}),
    retrieve=extend_schema(summary="One tracked run", responses={200: TrackedRunSerializer, **OBJECT_ERRORS}),
)
class TrackedRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet):
    model = TrackedRun
    serializer_class = TrackedRunSerializer
    filterset_class = TrackedRunFilter
