from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [("accounts", "0003_classify_existing_invitations")]

    operations = [
        migrations.AddConstraint(
            model_name='invitation',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('kind', 'address'), ('max_uses', 1), models.Q(('email', ''), _negated=True)), models.Q(('email', ''), ('kind', 'link')), _connector='OR'), name='invitation_address_or_open_link'),
        ),
        migrations.AddConstraint(
            model_name='invitation',
            constraint=models.CheckConstraint(condition=models.Q(('uses__lte', models.F('max_uses'))), name='invitation_uses_in_limit'),
        ),
    ]
