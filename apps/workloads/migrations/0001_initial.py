# The example workloads' models moved here from the jobs app. Their tables already exist (created by
# jobs.0001_initial, on fresh and existing databases alike), so this migration only takes them over
# in Django's state, and moves their content types so generic relations (Job.trigger) and
# permissions keep pointing at the same rows. jobs.0002 then drops them from the jobs app's state,
# and workloads.0002 renames the tables to this app's names.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

MOVED_MODELS = ["report", "batchitemresult", "externalrecord", "proberun"]


def move_content_types(apps, schema_editor, from_app="jobs", to_app="workloads"):
    """Relabel the moved models' content types, keeping their ids (what Job.trigger and permissions hold)."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    for model in MOVED_MODELS:
        if ContentType.objects.using(db).filter(app_label=to_app, model=model).exists():
            continue  # already there (created by an earlier post_migrate): nothing to move
        ContentType.objects.using(db).filter(app_label=from_app, model=model).update(app_label=to_app)


def move_content_types_back(apps, schema_editor):
    move_content_types(apps, schema_editor, from_app="workloads", to_app="jobs")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("jobs", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="ExternalRecord",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("external_id", models.CharField(max_length=100, unique=True)),
                        ("data", models.JSONField()),
                        ("first_synced_at", models.DateTimeField(auto_now_add=True)),
                        ("last_synced_at", models.DateTimeField()),
                    ],
                    options={
                        "ordering": ["external_id"],
                        "db_table": "jobs_externalrecord",
                    },
                ),
                migrations.CreateModel(
                    name="ProbeRun",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("job_id", models.UUIDField(db_index=True)),
                        ("attempt", models.PositiveIntegerField()),
                        ("finished_at", models.DateTimeField(auto_now_add=True)),
                    ],
                    options={
                        "ordering": ["-finished_at"],
                        "db_table": "jobs_proberun",
                    },
                ),
                migrations.CreateModel(
                    name="BatchItemResult",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("index", models.PositiveIntegerField()),
                        ("item", models.JSONField()),
                        ("outcome", models.CharField(choices=[("succeeded", "Succeeded"), ("failed", "Failed")], max_length=16)),
                        ("result", models.JSONField(blank=True, null=True)),
                        ("error", models.TextField(blank=True)),
                        ("job", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="batch_items", to="jobs.job")),
                    ],
                    options={
                        "ordering": ["job", "index"],
                        "db_table": "jobs_batchitemresult",
                        "constraints": [
                            models.UniqueConstraint(fields=("job", "index"), name="batch_item_unique"),
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="Report",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("type", models.CharField(choices=[("jobs", "Jobs ledger"), ("users", "Users"), ("external_records", "Synced external records")], default="jobs", max_length=32)),
                        ("filters", models.JSONField(blank=True, default=dict)),
                        ("key", models.CharField(blank=True, max_length=100, null=True, unique=True)),
                        ("file", models.FileField(blank=True, upload_to="reports/")),
                        ("row_count", models.PositiveIntegerField(blank=True, null=True)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("finished_at", models.DateTimeField(blank=True, null=True)),
                        ("created_by", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL)),
                        ("job", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="reports", to="jobs.job")),
                    ],
                    options={
                        "ordering": ["-created_at"],
                        "db_table": "jobs_report",
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_types, move_content_types_back, elidable=False),
    ]
