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


class Invitation(TeamOwnedModel):
    """An invite link: whoever opens it (signed in, or creating an account) joins with `role`."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(blank=True)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    team_path = "team"

    class Meta:
        ordering = ["-created_at"]

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
        return self.accepted_at is None and self.expires_at > timezone.now()


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
