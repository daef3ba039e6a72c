from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.utils import timezone
from rest_framework import serializers

from tinyforge.accounts.models import ApiToken, Invitation, InvitationKind, Membership, Team
from tinyforge.core.access import require_role
from tinyforge.core.api import StrictModelSerializer, StrictSerializer, TeamScopedRelatedField
from tinyforge.core.roles import Role, Scope

User = get_user_model()
MAX_LINK_USES = 1000


class LoginSerializer(StrictSerializer):
    username = serializers.CharField(max_length=254, help_text="User name or e-mail address")
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})


class TeamOfUserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices)


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.EmailField(allow_blank=True)
    is_staff = serializers.BooleanField()
    teams = TeamOfUserSerializer(many=True)


class CsrfSerializer(serializers.Serializer):
    csrf_token = serializers.CharField(help_text="Also set as the readable `csrftoken` cookie")


class TeamSerializer(StrictModelSerializer):
    role = serializers.SerializerMethodField(help_text="Your role in this team")

    class Meta:
        model = Team
        fields = ["id", "name", "slug", "role", "feedback_requires_write", "created_at", "updated_at"]
        read_only_fields = ["slug"]

    def get_role(self, team) -> str | None:
        from tinyforge.core.access import role_in

        return role_in(self.context["request"], team.pk)


class UserSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "email"]


class MembershipSerializer(StrictModelSerializer):
    user = UserSummarySerializer(read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "team", "user", "role", "created_at", "updated_at"]
        read_only_fields = ["team"]


class MembershipCreateSerializer(StrictSerializer):
    """Add an existing user (username) or create an account for a new one (username, email, password)."""

    team = TeamScopedRelatedField(queryset=Team.all_teams.all())
    # A new account's name obeys Django's own rule (letters, digits, @.+-_): the API documents it,
    # and an account made without it could not sign in through forms that check it.
    username = serializers.CharField(max_length=150, validators=[UnicodeUsernameValidator()])
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    password = serializers.CharField(
        required=False, write_only=True, trim_whitespace=False, max_length=4096,
        help_text="Give it to create a new account; leave it out to add an existing user",
    )
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)


class InvitationSerializer(StrictModelSerializer):
    invited_by = serializers.CharField(source="invited_by.username", read_only=True, default=None, allow_null=True)
    kind = serializers.ChoiceField(choices=InvitationKind.choices, default=InvitationKind.ADDRESS,
                                   help_text="address (default): for `email` only; link: an open link anyone may "
                                             "use, up to `max_uses` times")
    max_uses = serializers.IntegerField(min_value=1, max_value=MAX_LINK_USES, required=False,
                                        help_text="Open links only (required there); an address invitation is for one")
    expires_in_days = serializers.IntegerField(
        min_value=1, max_value=settings.INVITATION_VALID_DAYS, required=False, write_only=True,
        help_text=f"Expire this many days from now (default and most: {settings.INVITATION_VALID_DAYS})")

    class Meta:
        model = Invitation
        fields = ["id", "team", "kind", "email", "role", "max_uses", "uses", "invited_by", "created_at", "expires_at",
                  "expires_in_days", "accepted_at"]
        read_only_fields = ["uses", "expires_at", "accepted_at"]

    def validate(self, attrs):
        # Who may invite is answered before what the invitation says (403 before 400).
        require_role(self.context["request"], attrs["team"].pk, Role.ADMIN, action="invite members")
        if attrs["kind"] == InvitationKind.ADDRESS:
            if not attrs.get("email"):
                raise serializers.ValidationError({"email": ["An invitation is for an e-mail address; for a link anyone "
                                                             "may use, create kind \"link\" with max_uses."]})
            if attrs.get("max_uses", 1) != 1:
                raise serializers.ValidationError({"max_uses": ["An address invitation is for one person."]})
            attrs["max_uses"] = 1
        else:
            if attrs.get("email"):
                raise serializers.ValidationError({"email": ["An open link is for anyone who has it, not an address."]})
            if "max_uses" not in attrs:
                raise serializers.ValidationError({"max_uses": ["An open link needs a use limit."]})
        days = attrs.pop("expires_in_days", settings.INVITATION_VALID_DAYS)
        attrs["expires_at"] = timezone.now() + timedelta(days=days)
        return attrs


class InvitationCreatedSerializer(InvitationSerializer):
    token = serializers.CharField(read_only=True, help_text="Shown once")
    invite_path = serializers.CharField(read_only=True, help_text="Dashboard path to open: /invite/<token>")

    class Meta(InvitationSerializer.Meta):
        fields = InvitationSerializer.Meta.fields + ["token", "invite_path"]


class InvitationPreviewSerializer(serializers.Serializer):
    team = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices)
    kind = serializers.ChoiceField(choices=InvitationKind.choices)
    email = serializers.CharField(allow_blank=True)
    expires_at = serializers.DateTimeField()


class InvitationAcceptSerializer(StrictSerializer):
    token = serializers.CharField(max_length=200)
    username = serializers.CharField(max_length=150, required=False, validators=[UnicodeUsernameValidator()],
                                     help_text="New account (when not signed in)")
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    password = serializers.CharField(required=False, write_only=True, trim_whitespace=False, max_length=4096)


class ApiTokenSerializer(StrictModelSerializer):
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=Scope.choices), allow_empty=False, max_length=3,
        help_text="read, write (implies read), inference",
    )
    expires_in_days = serializers.IntegerField(
        required=False, min_value=1, max_value=3650, write_only=True,
        help_text="Instead of expires_at: expire this many days from now",
    )
    user = serializers.CharField(source="user.username", read_only=True)
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiToken
        fields = ["id", "name", "team", "user", "prefix", "scopes", "created_at", "expires_at", "expires_in_days",
                  "last_used_at", "revoked_at", "is_active"]
        read_only_fields = ["prefix", "last_used_at", "revoked_at"]

    def validate(self, attrs):
        days = attrs.pop("expires_in_days", None)
        if days is not None:
            if attrs.get("expires_at"):
                raise serializers.ValidationError({"expires_in_days": ["Give expires_at or expires_in_days, not both."]})
            attrs["expires_at"] = timezone.now() + timedelta(days=days)
        if attrs.get("expires_at") and attrs["expires_at"] <= timezone.now():
            raise serializers.ValidationError({"expires_at": ["Must be in the future."]})
        return attrs


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="The secret: shown once, store it now")

    class Meta(ApiTokenSerializer.Meta):
        fields = ApiTokenSerializer.Meta.fields + ["token"]
