from django.db import connection
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, permissions
from rest_framework.response import Response
from rest_framework.views import APIView

from tinyforge.core.api import AFTER_PARAMETERS, TeamScopedViewSet, rows_after
from tinyforge.core.filters import AuditEventFilter, event_filter
from tinyforge.core.models import AuditEvent, Event
from tinyforge.core.schema import OBJECT_ERRORS, READ_ERRORS, errors
from tinyforge.core.serializers import AuditEventSerializer, EventPageSerializer, EventSerializer, HealthSerializer


class EventViewSet(mixins.ListModelMixin, TeamScopedViewSet):
    """The Logs page: run, ingest, deployment and export log lines of your projects in one stream."""

    model = Event
    serializer_class = EventSerializer
    pagination_class = None

    @property
    def filterset_class(self):
        return event_filter()

    @extend_schema(parameters=AFTER_PARAMETERS, responses={200: EventPageSerializer, **errors(400, 401, 403)},
                   summary="Log lines after a cursor, oldest first (filter by project, run, level, source, kind)")
    def list(self, request):
        queryset = self.filter_queryset(self.get_queryset())
        rows, cursor, more = rows_after(queryset, request)
        return Response({"results": EventSerializer(rows, many=True).data, "next_after": cursor, "has_more": more})


@extend_schema_view(
    list=extend_schema(summary="Audit log of your teams (newest first; filter by team, project, actor, action)",
                       responses={200: AuditEventSerializer(many=True), **READ_ERRORS}),
    retrieve=extend_schema(summary="One audit event", responses={200: AuditEventSerializer, **OBJECT_ERRORS}),
)
class AuditEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet):
    model = AuditEvent
    serializer_class = AuditEventSerializer
    select_related = ("actor", "actor_token")
    filterset_class = AuditEventFilter
    ordering_fields = ["created_at", "id"]


class HealthView(APIView):
    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(operation_id="health", responses={200: HealthSerializer}, tags=["health"],
                   summary="Liveness and database reachability (no sign-in)")
    def get(self, request):
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return Response({"status": "ok", "database": connection.vendor})
