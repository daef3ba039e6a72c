"""Roles in a team and scopes of API tokens: what core's permissions check, and what the accounts
app stores on memberships and tokens."""

from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


# What each role may do, strongest first. Writes need MEMBER or above; managing people ADMIN.
ROLE_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


class Scope(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Write (implies read)"
    INFERENCE = "inference", "Inference"
