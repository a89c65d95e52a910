from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0002_move_workloads_models"),
    ]

    operations = [
        migrations.AddField(
            model_name="jobattempt",
            name="worker_id",
            field=models.CharField(blank=True, max_length=255),
        ),
    ]
