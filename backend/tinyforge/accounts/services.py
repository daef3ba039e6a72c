"""Rules about teams, members, invitations and tokens. Views call these; so do commands."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify

from tinyforge.accounts.models import ApiToken, Invitation, InvitationKind, Membership, Team, VerifiedEmail
from tinyforge.core.audit import audit, save_changes
from tinyforge.core.roles import Role, Scope
from tinyforge.errors import Conflict, InvalidInput, NotAllowed

User = get_user_model()


def unique_team_slug(name: str) -> str:
    base = slugify(name)[:80] or "team"
    slug, n = base, 1
    while Team.all_teams.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def create_team(request, *, name: str, owner) -> Team:
    team = Team.all_teams.create(name=name, slug=unique_team_slug(name))
    Membership.all_teams.create(team=team, user=owner, role=Role.OWNER)
    audit(request, "created", team)
    return team


def update_team(request, team: Team, changes: dict) -> Team:
    return save_changes(request, team, changes)


def delete_team(request, team: Team) -> None:
    audit(request, "deleted", team, changes={"name": team.name})
    team.delete()


def _owner_count(team_id: int) -> int:
    return Membership.all_teams.filter(team_id=team_id, role=Role.OWNER).count()


def _check_may_assign(request_role: str, role: str) -> None:
    if role == Role.OWNER and request_role != Role.OWNER:
        raise NotAllowed("Only an owner can make someone an owner.")


@transaction.atomic
def change_role(request, membership: Membership, role: str, *, request_role: str) -> Membership:
    # Lock the team's owner rows so two concurrent demotions cannot both see "another owner".
    list(Membership.all_teams.select_for_update().filter(team_id=membership.team_id, role=Role.OWNER))
    if membership.role == Role.OWNER and request_role != Role.OWNER:
        raise NotAllowed("Only an owner can change another owner's role.")
    _check_may_assign(request_role, role)
    if membership.role == Role.OWNER and role != Role.OWNER and _owner_count(membership.team_id) <= 1:
        raise Conflict("A team needs at least one owner: make someone else owner first.")
    before = membership.role
    membership.role = role
    membership.save(update_fields=["role", "updated_at"])
    audit(request, "role_changed", membership, changes={"role": [before, role]})
    return membership


@transaction.atomic
def remove_member(request, membership: Membership, *, request_role: str | None) -> None:
    list(Membership.all_teams.select_for_update().filter(team_id=membership.team_id, role=Role.OWNER))
    if membership.role == Role.OWNER and request_role != Role.OWNER and membership.user_id != request.user.pk:
        raise NotAllowed("Only an owner can remove an owner.")
    if membership.role == Role.OWNER and _owner_count(membership.team_id) <= 1:
        raise Conflict("A team needs at least one owner: make someone else owner first, or delete the team.")
    audit(request, "removed", membership, changes={"user": membership.user.username, "role": membership.role})
    # The member's tokens for this team stop working with the membership.
    ApiToken.all_teams.filter(team_id=membership.team_id, user_id=membership.user_id, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    membership.delete()


def create_user(*, username: str, email: str, password: str):
    if User._default_manager.filter(username=username).exists():
        raise InvalidInput({"username": ["A user with that user name already exists."]})
    if email and User._default_manager.filter(email__iexact=email).exists():
        raise InvalidInput({"email": ["A user with that e-mail address already exists."]})
    candidate = User(username=username, email=email)
    try:
        validate_password(password, user=candidate)
    except Exception as exc:  # django.core.exceptions.ValidationError
        raise InvalidInput({"password": list(getattr(exc, "messages", [str(exc)]))}) from None
    return User._default_manager.create_user(username=username, email=email, password=password)


@transaction.atomic
def add_member(request, team: Team, *, user, role: str, request_role: str) -> Membership:
    _check_may_assign(request_role, role)
    if Membership.all_teams.filter(team=team, user=user).exists():
        raise InvalidInput({"username": [f"{user.username} is already a member of {team.name}."]})
    membership = Membership.all_teams.create(team=team, user=user, role=role)
    audit(request, "added", membership, changes={"user": user.username, "role": role})
    return membership


def create_invitation(request, team: Team, *, kind: str, email: str, role: str, max_uses: int,
                      expires_at: datetime, request_role: str) -> tuple[Invitation, str]:
    _check_may_assign(request_role, role)
    token, token_hash = Invitation.new_token()
    invitation = Invitation.all_teams.create(
        team=team, kind=kind, email=email, role=role, max_uses=max_uses, token_hash=token_hash,
        invited_by=request.user, expires_at=expires_at,
    )
    audit(request, "invited", invitation, changes={"kind": kind, "email": email, "role": role, "max_uses": max_uses,
                                                   "expires_at": expires_at.isoformat()})
    return invitation, token


def find_invitation(token: str) -> Invitation:
    invitation = (
        Invitation.all_teams.select_related("team")
        .filter(token_hash=Invitation.hash_secret(token))
        .first()
    )
    if invitation is None or not invitation.is_usable:
        raise InvalidInput({"token": ["This invitation link is invalid, used or expired."]})
    return invitation


@transaction.atomic
def accept_invitation(request, invitation: Invitation, *, user=None, username: str = "", email: str = "",
                      password: str = "") -> Membership:
    """Join the invitation's team as the signed-in `user`, or as a new account (username and
    password). An address invitation goes only to its address: a new account gets it (the link
    reached it, which verifies it), a signed-in user must hold it verified."""
    bound = invitation.kind == InvitationKind.ADDRESS
    if user is None:
        if not username or not password:
            raise InvalidInput({"username": ["Sign in first, or give a user name and password for a new account."]})
        if bound and email and email.lower() != invitation.email.lower():
            raise InvalidInput({"email": ["This invitation is for another e-mail address; a new account made with it "
                                          "gets the invited address."]})
        user = create_user(username=username, email=invitation.email if bound else email, password=password)
        if bound:
            VerifiedEmail.objects.create(user=user, email=invitation.email, how="invitation")
    elif bound and not VerifiedEmail.holds(user, invitation.email):
        raise NotAllowed(
            "This invitation is for another e-mail address than your account's verified one. Open the link signed "
            "out to make an account for the invited address, or ask the team's admin to add you.")
    claimed = Invitation.all_teams.filter(pk=invitation.pk, uses__lt=F("max_uses"), expires_at__gt=timezone.now()).update(
        uses=F("uses") + 1, accepted_at=timezone.now(), accepted_by=user
    )
    if not claimed:
        raise InvalidInput({"token": ["This invitation link is invalid, used or expired."]})
    membership, created = Membership.all_teams.get_or_create(
        team=invitation.team, user=user, defaults={"role": invitation.role}
    )
    if created:
        audit(request, "joined", membership, changes={"role": invitation.role, "invitation": invitation.pk})
    return membership


def create_token(request, *, team: Team, name: str, scopes: list[str], expires_at: datetime | None) -> tuple[ApiToken, str]:
    secret, prefix, token_hash = ApiToken.new_secret()
    token = ApiToken.all_teams.create(
        user=request.user, team=team, name=name, prefix=prefix, token_hash=token_hash,
        scopes=sorted(set(scopes)), expires_at=expires_at,
    )
    audit(request, "created", token, changes={"scopes": token.scopes, "expires_at": str(expires_at or "")})
    return token, secret


def revoke_token(request, token: ApiToken) -> None:
    if ApiToken.all_teams.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()):
        audit(request, "revoked", token)
    token.refresh_from_db(fields=["revoked_at"])


ALL_SCOPES = [choice for choice, _ in Scope.choices]


@transaction.atomic
def ensure_user_with_team(*, username: str, email: str, password: str | None, team_name: str,
                          superuser: bool = False) -> tuple[object, Team, bool]:
    """The user (created with `password` if missing) as owner of `team_name` (created if
    missing). Returns (user, team, whether the user was created). Used by `tinyforge demo` and
    `manage.py createadmin`; running it again changes nothing."""
    user = User._default_manager.filter(username=username).first()
    created = user is None
    if created:
        if not password:
            raise ValueError(f"user {username} does not exist and no password was given")
        if superuser:
            user = User._default_manager.create_superuser(username=username, email=email, password=password)
            if email:  # the operator set it
                VerifiedEmail.objects.create(user=user, email=email, how="operator")
        else:
            user = User._default_manager.create_user(username=username, email=email, password=password)
    team = Team.all_teams.filter(name=team_name).order_by("pk").first()
    if team is None:
        team = Team.all_teams.create(name=team_name, slug=unique_team_slug(team_name))
    Membership.all_teams.get_or_create(team=team, user=user, defaults={"role": Role.OWNER})
    return user, team, created


def withdraw_invitation(request, invitation: Invitation) -> None:
    audit(request, "withdrawn", invitation)
    invitation.delete()
