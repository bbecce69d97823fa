"""Stages come from the registry (workers/stages), so a job's stage has no default; each
entry of a job's `skipped` says its kind, where the status once read prefixes of the text."""
from django.db import migrations, models

# How the reasons written before kinds existed began; read once here, never again.
OLD_PREFIXES = (("not a video or photo", "not_media"), ("same content as ", "duplicate"),
                ("left off the map", "left_off_map"), ("map ", "warning"))


def kind_of(reason):
    """A poster's warnings ("map ... was replaced", "...: N cell(s) left blank") were its only
    entries with these words."""
    if reason.endswith("cell(s) left blank"):
        return "warning"
    return next((kind for prefix, kind in OLD_PREFIXES if reason.startswith(prefix)), "unusable")


def add_skip_kinds(apps, schema_editor):
    Job = apps.get_model("explorer", "Job")
    for job in Job.objects.exclude(skipped=[]).only("pk", "skipped"):
        skipped = [{**skip, "kind": skip.get("kind") or kind_of(skip["reason"])} for skip in job.skipped]
        if skipped != job.skipped:
            Job.objects.filter(pk=job.pk).update(skipped=skipped)


class Migration(migrations.Migration):

    dependencies = [
        ("explorer", "0003_job_cancelled"),
    ]

    operations = [
        migrations.AlterField(model_name="job", name="stage", field=models.CharField(max_length=32)),
        migrations.RunPython(add_skip_kinds, migrations.RunPython.noop),
    ]
