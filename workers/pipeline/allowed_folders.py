"""The one rule of "inside the allowed folders", for what is ingested and what is served.

A path is inside when its real path (every link and '..' resolved) is one of the folders,
or lies below one of them, each folder resolved too. A path whose name lies inside but
that leads out through a link is refused like any other, with a reason that says so.

Which folders are allowed is the job's business (Job.allowed_folders): the server's
MEDIA_ROOTS for an ingest started from the web, `folders_of` the paths named on the
command line for one started there. Who asks:
  explorer/api.py          each path named to an ingest from the web, before the job starts
  workers/stages/ingest.py (scan)  each file an ingest found (a link in the folders may lead out)
  explorer/file_views.py   a source's file at every request (it may have become a link)
"""
import os
from pathlib import Path


class OutsideAllowedFolders(Exception):
    """`path` is not inside the allowed folders: `reason` says why in a few words, fit to
    follow "path: "; `real` is where it leads (for logs: not to be shown to strangers)."""

    def __init__(self, path, real, reason):
        self.path, self.real, self.reason = str(path), real, reason
        super().__init__(f"{path}: {reason}")


def allowed_real_path(path, folders, folders_are="the allowed folders"):
    """The real path of `path` (a Path, every link and '..' resolved) when it lies inside
    one of `folders`; OutsideAllowedFolders otherwise, whose reason is "outside
    `folders_are`", or "a link that leads outside `folders_are`" when the name lies
    inside. The path need not exist: the caller's stat or open says when it does not."""
    real = os.path.realpath(path)
    resolved = [os.path.realpath(folder) for folder in folders]
    if any(_within(real, folder) for folder in resolved):
        return Path(real)
    named = os.path.abspath(path)
    if any(_within(named, folder) for folder in [*map(os.path.abspath, folders), *resolved]):
        raise OutsideAllowedFolders(path, real, f"a link that leads outside {folders_are}")
    reason = f"outside {folders_are}" if folders else f"outside {folders_are} (there are none)"
    raise OutsideAllowedFolders(path, real, reason)


def _within(path, folder):
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def folders_of(paths):
    """The folders that naming `paths` to an ingest allows files from: each folder named, and
    the folder of each file named (a file's own name may be a link that leads elsewhere)."""
    folders = []
    for given in paths:
        path = os.path.abspath(os.path.expanduser(given))
        folders.append(path if os.path.isdir(path) else os.path.dirname(path))
    return list(dict.fromkeys(folders))
