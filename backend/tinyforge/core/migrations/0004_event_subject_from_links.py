"""Copy each event's links into its subject and parent, in a migration of its own: PostgreSQL
refuses to ALTER a table in the transaction that updated its rows (pending trigger events).

The most specific link is the subject (a dataset version, a deployment or an export, else the
run); a run next to it becomes the parent, so an export's lines stay in its run's log."""

from django.db import migrations
from django.db.models import F

LINKS = {"dataset_version": ("datasets", "datasetversion"), "deployment": ("deployments", "deployment"),
         "export": ("deployments", "export")}


def content_type(apps, app_label: str, model: str):
    # On a new database the content types are created after the migrations; make them now.
    return apps.get_model("contenttypes", "ContentType").objects.get_or_create(app_label=app_label, model=model)[0]


def links_to_subject(apps, schema_editor):
    events = apps.get_model("core", "Event")._default_manager
    run = content_type(apps, "training", "trainingrun")
    events.filter(run__isnull=False).update(subject_type=run, subject_id=F("run_id"))
    for link, (app_label, model) in LINKS.items():
        kind = content_type(apps, app_label, model)
        linked = events.filter(**{f"{link}__isnull": False})
        linked.filter(run__isnull=False).update(subject_type=kind, subject_id=F(f"{link}_id"),
                                                parent_type=run, parent_id=F("run_id"))
        linked.filter(run__isnull=True).update(subject_type=kind, subject_id=F(f"{link}_id"))


def subject_to_links(apps, schema_editor):
    events = apps.get_model("core", "Event")._default_manager
    run = content_type(apps, "training", "trainingrun")
    events.filter(subject_type=run).update(run_id=F("subject_id"))
    events.filter(parent_type=run).update(run_id=F("parent_id"))
    for link, (app_label, model) in LINKS.items():
        events.filter(subject_type=content_type(apps, app_label, model)).update(**{f"{link}_id": F("subject_id")})


class Migration(migrations.Migration):

    dependencies = [("core", "0003_event_subject")]

    operations = [migrations.RunPython(links_to_subject, subject_to_links)]
