"""Kinds for the invitations made before them, in a migration of its own: PostgreSQL refuses to
ALTER a table in the transaction that updated its rows (pending trigger events), so the data
change and the constraints that follow it each get their own transaction."""

from django.db import migrations


def classify_existing(apps, schema_editor):
    """Invitations made before kinds: one with an address stays bound to it; one without was an
    open link for one use; a used one has used its one use."""
    Invitation = apps.get_model("accounts", "Invitation")
    Invitation._default_manager.filter(email="").update(kind="link")
    Invitation._default_manager.filter(accepted_at__isnull=False).update(uses=1)


class Migration(migrations.Migration):

    dependencies = [("accounts", "0002_invitations_bound_to_their_address")]

    operations = [migrations.RunPython(classify_existing, migrations.RunPython.noop)]
