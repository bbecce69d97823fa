"""Strict readers for settings that come from environment variables.

Each helper refuses a malformed value with an error that names the variable and
says what was expected, so a typo in a deployment fails at start-up, not later.
"""
import math
import os
from pathlib import Path
from urllib.parse import urlparse

from django.core.exceptions import ImproperlyConfigured


def _raw(name, default):
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def env_str(name, default=None):
    return _raw(name, default)


def env_bool(name, default=False):
    value = _raw(name, None)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean: use true/false, 1/0, yes/no or on/off")


def env_int(name, default, minimum=None, maximum=None):
    value = _raw(name, None)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a whole number") from None
    return _within(name, number, minimum, maximum)


def _within(name, number, minimum, maximum=None):
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} is below its minimum of {minimum}")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name}={number} is above its maximum of {maximum}")
    return number


def env_float(name, default, minimum=None, maximum=None):
    value = _raw(name, None)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise ImproperlyConfigured(f"{name}={value!r} is not a finite number")
    return _within(name, number, minimum, maximum)


def env_url(name, default=None, schemes=()):
    value = _raw(name, default)
    if value is None:
        return None
    scheme = urlparse(value).scheme
    if schemes and scheme not in schemes:
        raise ImproperlyConfigured(
            f"{name}={value!r} must be a URL starting with one of: {', '.join(s + '://' for s in schemes)}"
        )
    return value


def env_dir(name, default):
    """A directory path; created if missing, refused if it is a file."""
    path = Path(_raw(name, str(default))).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ImproperlyConfigured(f"{name}={str(path)!r} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImproperlyConfigured(f"{name}={str(path)!r} cannot be created: {exc.strerror}") from None
    return path


def env_path_list(name, default=()):
    """A list of existing directories separated by os.pathsep (':' on Linux), like PATH."""
    value = _raw(name, None)
    if value is None:
        return [Path(p).resolve() for p in default]
    paths = []
    for part in value.split(os.pathsep):
        if not part.strip():
            continue
        path = Path(part.strip()).expanduser().resolve()
        if not path.is_dir():
            raise ImproperlyConfigured(f"{name} names {str(path)!r}, which is not an existing directory")
        paths.append(path)
    return paths


def env_choice_or_path(name, default, choices):
    """Either one of `choices` (e.g. 'imagenet', 'random') or a path to an existing file."""
    value = _raw(name, default)
    if value in choices:
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise ImproperlyConfigured(
            f"{name}={value!r} is neither one of {', '.join(choices)} nor an existing file"
        )
    return str(path.resolve())


def env_choice(name, default, choices):
    value = _raw(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} is not one of: {', '.join(choices)}")
    return value
