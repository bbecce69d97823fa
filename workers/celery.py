"""The Celery application. Configuration comes from Django settings (CELERY_*)."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "explorer.settings")

app = Celery("explorer")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])


def _install_steps():
    from workers.recovery import RecoveryStep

    app.steps["worker"].add(RecoveryStep)


_install_steps()
