"""The console's roles: operators act on jobs, viewers only look."""

from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLES = {
    "operators": [
        "view_job",
        "retry_job",
        "cancel_job",
        "requeue_dead_letters",
        "view_jobattempt",
        "view_jobevent",
        "view_worker",
    ],
    "viewers": ["view_job", "view_jobattempt", "view_jobevent", "view_worker"],
}


def create_roles(apps, schema_editor):
    # Permissions are normally made after all migrations ran; the groups need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*Permission.objects.filter(content_type__app_label="jobs", codename__in=codenames))


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("jobs", "0006_workers_and_console_permissions"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
