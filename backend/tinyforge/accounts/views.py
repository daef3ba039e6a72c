from __future__ import annotations

from django.contrib.auth import authenticate, get_user_model, login, logout
from django.db.models import Q
from django.middleware.csrf import get_token
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, permissions, status
from rest_framework.authentication import CSRFCheck
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from tinyforge.accounts import services
from tinyforge.accounts.filters import ApiTokenFilter, InvitationFilter, MembershipFilter
from tinyforge.accounts.models import ApiToken, Invitation, Membership, Team
from tinyforge.accounts.serializers import (
    ApiTokenCreatedSerializer,
    ApiTokenSerializer,
    CsrfSerializer,
    InvitationAcceptSerializer,
    InvitationCreatedSerializer,
    InvitationPreviewSerializer,
    InvitationSerializer,
    LoginSerializer,
    MembershipCreateSerializer,
    MembershipSerializer,
    MeSerializer,
    TeamSerializer,
)
from tinyforge.core.access import has_role, require_role, role_in, team_roles, token_of
from tinyforge.core.api import TeamScopedViewSet
from tinyforge.core.errors import json_error_response
from tinyforge.core.roles import Role

User = get_user_model()
ERRORS = {400: OpenApiResponse(description="Invalid input (error body)"),
          401: OpenApiResponse(description="Not signed in"),
          403: OpenApiResponse(description="Not allowed"),
          404: OpenApiResponse(description="No such object in your teams")}


class InvalidCredentials(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "Wrong user name, e-mail or password."
    default_code = "invalid_credentials"


def enforce_csrf(request) -> None:
    """Django's CSRF check for views that accept anonymous callers (DRF only checks signed-in ones)."""

    def no_view(req):  # CsrfViewMiddleware needs a get_response; it is never called here
        return None

    check = CSRFCheck(no_view)
    check.process_request(request._request)
    reason = check.process_view(request._request, None, (), {})
    if reason:
        raise exceptions.PermissionDenied(f"CSRF Failed: {reason}")


def lockout_response(request, original_response=None, credentials=None):
    """django-axes' answer once a user name and address are locked out: our JSON error body."""
    from django.conf import settings

    minutes = int(settings.AXES_COOLOFF_TIME * 60)
    response = json_error_response(
        429, "locked_out",
        f"Too many failed sign-ins. Sign-in for this account is locked for {minutes} minutes.",
    )
    response["Retry-After"] = str(minutes * 60)
    return response


def me_payload(request) -> dict:
    user = request.user
    roles = team_roles(request)
    teams = Team.objects.for_teams(list(roles)).order_by("name")
    return {
        "id": user.pk, "username": user.username, "email": user.email, "is_staff": user.is_staff,
        "teams": [{"id": t.pk, "name": t.name, "slug": t.slug, "role": roles[t.pk]} for t in teams],
    }


class CsrfView(APIView):
    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(operation_id="auth_csrf", responses=CsrfSerializer, tags=["auth"],
                   summary="Set the csrftoken cookie and return its value")
    def get(self, request):
        return Response({"csrf_token": get_token(request._request)})


class LoginView(APIView):
    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(operation_id="auth_login", request=LoginSerializer,
                   responses={200: MeSerializer, 400: ERRORS[400], 403: OpenApiResponse(description="CSRF failed"),
                              429: OpenApiResponse(description="Locked out after repeated failures")},
                   tags=["auth"], summary="Sign in with user name or e-mail and password")
    def post(self, request):
        enforce_csrf(request)
        serializer = LoginSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = authenticate(request._request, **serializer.validated_data)
        if getattr(request._request, "axes_locked_out", False):
            return lockout_response(request._request)
        if user is None:
            raise InvalidCredentials()
        login(request._request, user)
        request.user = user
        return Response(me_payload(request))


class LogoutView(APIView):
    permission_classes = [permissions.AllowAny]

    @extend_schema(operation_id="auth_logout", request=None, responses={204: None}, tags=["auth"],
                   summary="Sign out (ends the session)")
    def post(self, request):
        if token_of(request) is None:
            enforce_csrf(request)
        logout(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    @extend_schema(operation_id="auth_me", responses={200: MeSerializer, 401: ERRORS[401]}, tags=["auth"],
                   summary="Who am I: the signed-in user with their teams and roles")
    def get(self, request):
        return Response(me_payload(request))


@extend_schema_view(
    list=extend_schema(summary="Your teams, with your role in each"),
    retrieve=extend_schema(summary="One of your teams", responses={200: TeamSerializer, 404: ERRORS[404]}),
    create=extend_schema(summary="Create a team (you become its owner)", responses={201: TeamSerializer, 400: ERRORS[400]}),
    partial_update=extend_schema(summary="Rename a team or change its settings (admin or owner)", responses={200: TeamSerializer, 403: ERRORS[403]}),
    destroy=extend_schema(summary="Delete a team and everything in it (owner only)", responses={204: None, 403: ERRORS[403]}),
)
class TeamViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                  mixins.UpdateModelMixin, mixins.DestroyModelMixin, TeamScopedViewSet):
    model = Team
    serializer_class = TeamSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    ordering_fields = ["name", "created_at"]
    write_role = Role.ADMIN

    def get_permissions(self):
        if self.action == "destroy":
            self.write_role = Role.OWNER
        return super().get_permissions()

    def perform_create(self, serializer):
        if token_of(self.request) is not None:
            raise exceptions.PermissionDenied("Create teams from a signed-in session; an API token belongs to one team.")
        serializer.instance = services.create_team(self.request, name=serializer.validated_data["name"], owner=self.request.user)
        self.request._tinyforge_team_roles = None  # the caller just joined a team

    def perform_update(self, serializer):
        serializer.instance = services.update_team(self.request, serializer.instance, serializer.validated_data)

    def perform_destroy(self, instance):
        services.delete_team(self.request, instance)


@extend_schema_view(
    list=extend_schema(summary="Members of your teams (filter by team)"),
    retrieve=extend_schema(summary="One membership", responses={200: MembershipSerializer, 404: ERRORS[404]}),
    partial_update=extend_schema(summary="Change a member's role (admin or owner)",
                                 responses={200: MembershipSerializer, 403: ERRORS[403], 409: OpenApiResponse(description="Last owner")}),
    destroy=extend_schema(summary="Remove a member (admin or owner), or leave a team yourself",
                          responses={204: None, 403: ERRORS[403], 409: OpenApiResponse(description="Last owner")}),
)
class MembershipViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin,
                        mixins.DestroyModelMixin, TeamScopedViewSet):
    model = Membership
    serializer_class = MembershipSerializer
    select_related = ("user", "team")
    filterset_class = MembershipFilter
    ordering_fields = ["created_at", "role", "user__username"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    write_role = Role.ADMIN

    def check_object_permissions(self, request, obj):
        if self.action == "destroy" and obj.user_id == request.user.pk:
            return  # anyone may leave a team (the last owner is stopped by the service)
        super().check_object_permissions(request, obj)

    @extend_schema(request=MembershipCreateSerializer, responses={201: MembershipSerializer, 400: ERRORS[400], 403: ERRORS[403]},
                   summary="Add a member: an existing user by user name, or a new account (with password)")
    def create(self, request):
        data = MembershipCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        team = fields["team"]
        request_role = require_role(request, team.pk, Role.ADMIN, action="add members")
        if "password" in fields:
            user = services.create_user(username=fields["username"], email=fields["email"], password=fields["password"])
        else:
            user = User._default_manager.filter(username=fields["username"]).first()
            if user is None:
                raise exceptions.ValidationError({"username": ["No such user; give a password to create the account."]})
        membership = services.add_member(request, team, user=user, role=fields["role"], request_role=request_role)
        return Response(MembershipSerializer(membership, context={"request": request}).data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        membership = serializer.instance
        request_role = role_in(self.request, membership.team_id)
        serializer.instance = services.change_role(
            self.request, membership, serializer.validated_data.get("role", membership.role), request_role=request_role
        )

    def perform_destroy(self, instance):
        services.remove_member(self.request, instance, request_role=role_in(self.request, instance.team_id))


@extend_schema_view(
    list=extend_schema(summary="Open and past invitations of teams you manage"),
    retrieve=extend_schema(summary="One invitation", responses={200: InvitationSerializer, 404: ERRORS[404]}),
    destroy=extend_schema(summary="Withdraw an invitation (admin or owner)", responses={204: None, 403: ERRORS[403]}),
)
class InvitationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, TeamScopedViewSet):
    model = Invitation
    serializer_class = InvitationSerializer
    select_related = ("invited_by", "team")
    filterset_class = InvitationFilter
    ordering_fields = ["created_at", "expires_at"]
    write_role = Role.ADMIN

    def get_permissions(self):
        if self.action in ("accept", "preview"):
            return [permissions.AllowAny()]
        return super().get_permissions()

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return super().get_queryset()
        manageable = [t for t, role in team_roles(self.request).items() if has_role(role, Role.ADMIN)]
        return Invitation.objects.for_teams(manageable).select_related(*self.select_related)

    @extend_schema(request=InvitationSerializer, responses={201: InvitationCreatedSerializer, 400: ERRORS[400], 403: ERRORS[403]},
                   summary="Create an invite link (admin or owner); the token is shown once")
    def create(self, request):
        serializer = InvitationSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        team = fields["team"]
        request_role = require_role(request, team.pk, Role.ADMIN, action="invite members")
        invitation, token = services.create_invitation(
            request, team, kind=fields["kind"], email=fields.get("email", ""), role=fields.get("role", Role.MEMBER),
            max_uses=fields["max_uses"], expires_at=fields["expires_at"], request_role=request_role,
        )
        invitation.token = token
        invitation.invite_path = f"/invite/{token}"
        return Response(InvitationCreatedSerializer(invitation, context={"request": request}).data,
                        status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        services.withdraw_invitation(self.request, instance)

    @extend_schema(parameters=[OpenApiParameter("token", str, required=True)],
                   responses={200: InvitationPreviewSerializer, 400: ERRORS[400]},
                   summary="What an invite link offers (no sign-in needed)")
    @action(detail=False, methods=["get"])
    def preview(self, request):
        invitation = services.find_invitation(request.query_params.get("token", ""))
        return Response({"team": invitation.team.name, "role": invitation.role, "kind": invitation.kind,
                         "email": invitation.email, "expires_at": invitation.expires_at})

    @extend_schema(request=InvitationAcceptSerializer, responses={200: MembershipSerializer, 400: ERRORS[400]},
                   summary="Accept an invite: join as the signed-in user, or create an account and sign in")
    @action(detail=False, methods=["post"])
    def accept(self, request):
        if token_of(request) is not None:
            raise exceptions.PermissionDenied("Accept invitations from a signed-in session or as a new user.")
        enforce_csrf(request)
        serializer = InvitationAcceptSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        invitation = services.find_invitation(fields["token"])
        signed_in = request.user.is_authenticated
        membership = services.accept_invitation(
            request, invitation, user=request.user if signed_in else None, username=fields.get("username", ""),
            email=fields.get("email", ""), password=fields.get("password", ""))
        if not signed_in:
            login(request._request, membership.user, backend="tinyforge.accounts.backends.UsernameOrEmailBackend")
        return Response(MembershipSerializer(membership, context={"request": request}).data)


@extend_schema_view(
    list=extend_schema(summary="Your API tokens, and other members' tokens in teams you manage"),
    retrieve=extend_schema(summary="One API token (never its secret)", responses={200: ApiTokenSerializer, 404: ERRORS[404]}),
    destroy=extend_schema(summary="Revoke a token (yours, or any in a team you manage)", responses={204: None, 403: ERRORS[403]}),
)
class ApiTokenViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, TeamScopedViewSet):
    model = ApiToken
    serializer_class = ApiTokenSerializer
    select_related = ("user", "team")
    filterset_class = ApiTokenFilter
    ordering_fields = ["created_at", "last_used_at", "name"]
    session_only = True

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return super().get_queryset()
        roles = team_roles(self.request)
        managed = [t for t, role in roles.items() if has_role(role, Role.ADMIN)]
        return super().get_queryset().filter(Q(user=self.request.user) | Q(team_id__in=managed))

    def check_object_permissions(self, request, obj):
        # Replaces the role rule: a viewer may revoke their own token; others' need admin.
        if request.method not in permissions.SAFE_METHODS and obj.user_id != request.user.pk:
            require_role(request, obj.team_id, Role.ADMIN, action="revoke another member's token")

    @extend_schema(request=ApiTokenSerializer, responses={201: ApiTokenCreatedSerializer, 400: ERRORS[400]},
                   summary="Create a token for one of your teams; the secret is in the answer, once")
    def create(self, request):
        serializer = ApiTokenSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        team = fields["team"]
        role = require_role(request, team.pk, Role.VIEWER, action="create a token")
        if "write" in fields["scopes"] and not has_role(role, Role.MEMBER):
            raise exceptions.ValidationError({"scopes": [f"Your role in {team.name} is {role}: it cannot write."]})
        token, secret = services.create_token(request, team=team, name=fields["name"], scopes=fields["scopes"],
                                              expires_at=fields.get("expires_at"))
        token.token = secret
        return Response(ApiTokenCreatedSerializer(token, context={"request": request}).data, status=status.HTTP_201_CREATED)

    def destroy(self, request, *args, **kwargs):
        token = self.get_object()
        services.revoke_token(request, token)
        return Response(status=status.HTTP_204_NO_CONTENT)
