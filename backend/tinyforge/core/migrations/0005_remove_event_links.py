"""The events' foreign keys to the apps' tables go, now that 0004 copied them into the subject."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [("core", "0004_event_subject_from_links")]

    operations = [
        migrations.RemoveIndex(model_name="event", name="event_run_cursor"),
        migrations.RemoveField(model_name="event", name="dataset_version"),
        migrations.RemoveField(model_name="event", name="deployment"),
        migrations.RemoveField(model_name="event", name="export"),
        migrations.RemoveField(model_name="event", name="run"),
    ]
