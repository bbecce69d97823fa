"""Pieces of the LOGGING setting (explorer/settings.py): what reaches the terminal, and the
log files under DATA_DIR/logs for the rest."""
import logging
from pathlib import Path

# Requests a page makes by itself, often (the map page asks for its state every second
# while a job runs), or by the hundred (tiles, frames): logged to the file only.
BACKGROUND_PREFIXES = ("/api/", "/static/", "/frames/", "/sources/", "/posters/", "/favicon.ico")


def request_path(record):
    """The path of a development-server request log record ('"GET /x/?a=1 HTTP/1.1" 200 5')."""
    args = record.args if isinstance(record.args, tuple) else ()
    if not args or not isinstance(args[0], str):
        return None
    parts = args[0].split()
    return parts[1].split("?", 1)[0] if len(parts) >= 2 else None


class PagesOnly(logging.Filter):
    """Lets through the requests for pages (and every server error, whatever the path);
    leaves out the polled JSON, tiles, frames, files and static files."""

    def filter(self, record):
        path = request_path(record)
        if path is None or getattr(record, "status_code", 200) >= 500:
            return True
        return not (path.startswith(BACKGROUND_PREFIXES) or "/tiles/" in path)


class FilesystemBrokerNoise(logging.Filter):
    """kombu warns 'No hostname was supplied' on every connection to the filesystem broker
    (the embedded default), which has no host to supply."""

    def filter(self, record):
        return not record.getMessage().startswith("No hostname was supplied")


class LogFile(logging.FileHandler):
    """A log file opened on the first record, its folder made then: processes that never
    log there (a worker, a test) leave no empty file behind."""

    def __init__(self, filename, **kwargs):
        super().__init__(filename, delay=True, encoding="utf-8", **kwargs)

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()
