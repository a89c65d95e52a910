# Report, BatchItemResult, ExternalRecord and ProbeRun moved to the workloads app (workloads.0001
# took them over in Django's state). Dropped from this app's state only: their tables and rows stay,
# owned by the workloads app from now on.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0001_initial"),
        ("workloads", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="BatchItemResult"),
                migrations.DeleteModel(name="ExternalRecord"),
                migrations.DeleteModel(name="ProbeRun"),
                migrations.DeleteModel(name="Report"),
            ],
            database_operations=[],
        ),
    ]
