"""Events name what they concern through a generic subject (and parent) instead of foreign keys
to the apps' tables, so core names no app. The old links stay until 0004 has copied them."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("core", "0002_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="event",
            name="subject_type",
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE,
                                    related_name="+", to="contenttypes.contenttype"),
        ),
        migrations.AddField(
            model_name="event",
            name="subject_id",
            field=models.PositiveBigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="event",
            name="parent_type",
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE,
                                    related_name="+", to="contenttypes.contenttype"),
        ),
        migrations.AddField(
            model_name="event",
            name="parent_id",
            field=models.PositiveBigIntegerField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(fields=["subject_type", "subject_id", "id"], name="event_subject_cursor"),
        ),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(fields=["parent_type", "parent_id", "id"], name="event_parent_cursor"),
        ),
    ]
