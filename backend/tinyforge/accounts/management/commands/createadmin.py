"""Create the first administrator from the environment (docker-compose runs this at start).

TINYFORGE_ADMIN_USERNAME, TINYFORGE_ADMIN_EMAIL, TINYFORGE_ADMIN_PASSWORD (or
TINYFORGE_ADMIN_PASSWORD_FILE) and TINYFORGE_ADMIN_TEAM. Without a user name it does nothing;
an existing user is left as it is (its password is not reset), so it is safe on every start.
"""

from django.core.management.base import BaseCommand, CommandError

from tinyforge.accounts.services import ensure_user_with_team
from tinyforge.core.env import SettingError, env_str


class Command(BaseCommand):
    help = "Create the first admin user and team from TINYFORGE_ADMIN_* environment variables (idempotent)."

    def handle(self, *args, **options):
        try:
            username = env_str("TINYFORGE_ADMIN_USERNAME", None)
            if not username:
                self.stdout.write("TINYFORGE_ADMIN_USERNAME is not set: no admin created.")
                return
            email = env_str("TINYFORGE_ADMIN_EMAIL", "")
            password = env_str("TINYFORGE_ADMIN_PASSWORD", None, secret=True)
            team_name = env_str("TINYFORGE_ADMIN_TEAM", "Default team")
        except SettingError as exc:
            raise CommandError(str(exc)) from None
        try:
            user, team, created = ensure_user_with_team(
                username=username, email=email, password=password, team_name=team_name, superuser=True
            )
        except ValueError:
            raise CommandError(
                f"user {username} does not exist: set TINYFORGE_ADMIN_PASSWORD (or _FILE) to create it"
            ) from None
        verb = "created" if created else "already exists"
        self.stdout.write(f"admin {user.username} {verb}; owner of team {team.name}")
