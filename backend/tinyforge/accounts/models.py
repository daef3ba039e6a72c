"""Teams, memberships with roles, invitations and API tokens."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from tinyforge.core.roles import Role, Scope
from tinyforge.core.tenancy import TeamOwnedModel


class Team(TeamOwnedModel):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100, unique=True)
    feedback_requires_write = models.BooleanField(
        default=False, help_text="Feedback on completions needs an API token with the 'write' scope (or a member's "
                                 "session); by default a token with 'inference', the one an application answers "
                                 "with, may send its users' feedback too")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    team_path = "id"

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(TeamOwnedModel):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    team_path = "team"

    class Meta:
        ordering = ["team_id", "user__username"]
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="membership_unique_user_per_team")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class InvitationKind(models.TextChoices):
    ADDRESS = "address", "For one e-mail address"
    LINK = "link", "Open link: anyone who has it, up to its use limit"


class Invitation(TeamOwnedModel):
    """An invitation to join a team with `role`, accepted through its secret link.

    An address invitation is for one e-mail address: it makes a new account with that address
    (the link reached it), or is accepted by a signed-in user whose address is that one and
    verified. An open link (kind "link") is a separate kind an admin creates knowingly: anyone
    with the link joins, until it expires or has been used `max_uses` times.
    """

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations")
    kind = models.CharField(max_length=8, choices=InvitationKind.choices, default=InvitationKind.ADDRESS)
    email = models.EmailField(blank=True, help_text="The invited address (address invitations only)")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    max_uses = models.PositiveIntegerField(default=1, help_text="How many people may join with it (1 for an address)")
    uses = models.PositiveIntegerField(default=0)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True, help_text="When it was last used")
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    team_path = "team"

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(kind=InvitationKind.ADDRESS, max_uses=1) & ~models.Q(email=""))
                | models.Q(kind=InvitationKind.LINK, email=""),
                name="invitation_address_or_open_link"),
            models.CheckConstraint(condition=models.Q(uses__lte=models.F("max_uses")), name="invitation_uses_in_limit"),
        ]

    @staticmethod
    def new_token() -> tuple[str, str]:
        """(secret for the link, its hash to store)."""
        token = secrets.token_urlsafe(32)
        return token, _hash_secret(token)

    @staticmethod
    def hash_secret(token: str) -> str:
        return _hash_secret(token)

    @staticmethod
    def default_expiry():
        return timezone.now() + timedelta(days=settings.INVITATION_VALID_DAYS)

    @property
    def is_usable(self) -> bool:
        return self.uses < self.max_uses and self.expires_at > timezone.now()


class VerifiedEmail(models.Model):
    """An address its user has shown to be theirs: an invitation to it was accepted by opening its
    link, or the operator set it (createadmin). Only the user's current address counts."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="verified_emails")
    email = models.EmailField()
    verified_at = models.DateTimeField(auto_now_add=True)
    how = models.CharField(max_length=16, choices=[("invitation", "Accepted an invitation sent to it"),
                                                   ("operator", "Set by the operator")])

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "email"], name="verified_email_once_per_user")]

    @staticmethod
    def holds(user, email: str) -> bool:
        """Whether `user`'s current address is `email` (ignoring case) and verified."""
        return (bool(email) and user.email.lower() == email.lower()
                and VerifiedEmail.objects.filter(user=user, email__iexact=email).exists())


class ApiToken(TeamOwnedModel):
    """A bearer token for scripts. Only the SHA-256 of the secret is stored; its prefix is shown."""

    PREFIX = "tf_"
    VISIBLE_CHARS = 12  # "tf_" + 9 characters: enough to tell tokens apart, useless to an attacker

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, editable=False, db_index=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    team_path = "team"

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def new_secret(cls) -> tuple[str, str, str]:
        """(secret shown once, visible prefix, hash to store)."""
        secret = cls.PREFIX + secrets.token_urlsafe(32)
        return secret, secret[: cls.VISIBLE_CHARS], _hash_secret(secret)

    @staticmethod
    def hash_secret(secret: str) -> str:
        return _hash_secret(secret)

    @property
    def effective_scopes(self) -> set[str]:
        scopes = set(self.scopes)
        if Scope.WRITE in scopes:
            scopes.add(Scope.READ)
        return scopes

    def has_scope(self, scope: str) -> bool:
        return scope in self.effective_scopes

    @property
    def is_active(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()
