"""Settings come from the environment; a bad value stops the program with a message
that names the variable."""
import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from explorer import env
from tests.conftest import ROOT


@pytest.mark.parametrize("helper, value, message", [
    (lambda: env.env_int("X_TEST", 1), "twelve", "X_TEST='twelve' is not a whole number"),
    (lambda: env.env_int("X_TEST", 1, minimum=1), "0", "X_TEST=0 is below its minimum of 1"),
    (lambda: env.env_float("X_TEST", 1.0), "fast", "X_TEST='fast' is not a number"),
    (lambda: env.env_bool("X_TEST"), "maybe", "X_TEST='maybe' is not a boolean"),
    (lambda: env.env_url("X_TEST", schemes=("redis",)), "http://x", "must be a URL starting with one of: redis://"),
    (lambda: env.env_path_list("X_TEST"), "/no/such/folder", "names '/no/such/folder', which is not an existing"),
    (lambda: env.env_choice_or_path("X_TEST", "a", ("a", "b")), "/no/weights.h5", "neither one of a, b nor"),
])
def test_helpers_refuse_bad_values(monkeypatch, helper, value, message):
    monkeypatch.setenv("X_TEST", value)
    with pytest.raises(ImproperlyConfigured, match=message.replace("(", r"\(").replace(")", r"\)")):
        helper()


def test_helpers_accept_good_values(monkeypatch, tmp_path):
    monkeypatch.setenv("X_TEST", f"{tmp_path}{os.pathsep}{tmp_path}")
    assert env.env_path_list("X_TEST") == [tmp_path.resolve(), tmp_path.resolve()]
    monkeypatch.setenv("X_TEST", "off")
    assert env.env_bool("X_TEST", True) is False
    monkeypatch.delenv("X_TEST")
    assert env.env_int("X_TEST", 7) == 7


@pytest.mark.parametrize("variable, value, message", [
    ("DATABASE_URL", "mysql://db/x", "DATABASE_URL='mysql://db/x' must be a URL starting with one of"),
    ("SAMPLE_EVERY", "often", "SAMPLE_EVERY='often' is not a whole number"),
    ("XCEPTION_WEIGHTS", "/missing.h5", "XCEPTION_WEIGHTS='/missing.h5' is neither"),
    ("MEDIA_ROOTS", "/no/such/root", "MEDIA_ROOTS names '/no/such/root'"),
    ("FEATURE_PRECISION", "fast", "FEATURE_PRECISION='fast' is not one of"),
    ("FEATURE_RUNTIME", "onnx", "FEATURE_RUNTIME='onnx' is not one of: auto, openvino, keras"),
    # The tests run FEATURE_RUNTIME=keras (tests/environment.py): an OpenVINO precision contradicts it.
    ("FEATURE_PRECISION", "openvino-f32", "FEATURE_PRECISION=openvino-f32 is not a precision of FEATURE_RUNTIME=keras"),
    ("LOG_LEVEL", "loud", "LOG_LEVEL='loud' is not one of: DEBUG, INFO, WARNING, ERROR, CRITICAL"),
])
def test_a_bad_setting_stops_the_program_with_its_name(variable, value, message):
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                            env=dict(os.environ, **{variable: value}))
    assert result.returncode == 1 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_non_finite_numbers_are_refused(monkeypatch):
    monkeypatch.setenv("X_TEST", "nan")
    with pytest.raises(ImproperlyConfigured, match="is not a finite number"):
        env.env_float("X_TEST", 1.0)
