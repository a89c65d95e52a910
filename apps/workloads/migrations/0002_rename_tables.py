# The moved models' tables take this app's names (jobs_report -> workloads_report, ...): a rename,
# rows, indexes and constraints kept. Runs after jobs.0002, so no app's state still names the old tables.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0002_move_workloads_models"),
        ("workloads", "0001_initial"),
    ]

    operations = [
        migrations.AlterModelTable(name="batchitemresult", table=None),
        migrations.AlterModelTable(name="externalrecord", table=None),
        migrations.AlterModelTable(name="proberun", table=None),
        migrations.AlterModelTable(name="report", table=None),
    ]
