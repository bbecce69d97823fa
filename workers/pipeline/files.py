"""Finding media files, opening them safely, and identifying them by content."""
import hashlib
import os
import stat
from pathlib import Path
from typing import NamedTuple

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .wmv .flv .mpg .mpeg .ts .mts .m2ts .3gp .ogv .gif".split()
)
PHOTO_EXTENSIONS = frozenset(".jpg .jpeg .png .webp .bmp .tif .tiff".split())


def media_kind(path):
    """'video', 'photo' or None, by file extension (animated GIFs are videos)."""
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    if suffix in PHOTO_EXTENSIONS:
        return "photo"
    return None


IRREGULAR_KINDS = ((stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"),
                   (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))


class NotRegularFile(OSError):
    """A path that is a pipe, a socket or a device: reading it could block for good (a named
    pipe waits for a writer) or do harm (a device), so it is never opened."""

    def __init__(self, path, mode):
        kind = next((name for test, name in IRREGULAR_KINDS if test(mode)), "special file")
        self.reason = f"not a regular file ({kind})"
        super().__init__(f"{path}: {self.reason}")


def not_regular(path):
    """The reason `path` (followed through symlinks) is not a regular file, or None when it is
    one or cannot be examined (missing, unreadable: the caller's open will say why)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) else NotRegularFile(path, mode).reason


def open_regular(path):
    """`path` opened for binary reading, or NotRegularFile when it is not a regular file.
    Checked twice: before opening, so a device is never opened, and on the open file, so a
    file swapped for a named pipe in between cannot hang the reader (O_NONBLOCK makes the
    open of a pipe return at once instead of waiting for a writer)."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise NotRegularFile(path, mode)

    def opener(name, flags):
        fd = os.open(name, flags | os.O_NONBLOCK)
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise NotRegularFile(path, mode)
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    return open(path, "rb", opener=opener)


class PassedOver(NamedTuple):
    """A path the scan did not take, with why; `not_media` when it is merely a file without a
    video or photo extension inside a folder (information, not a failure)."""
    path: str
    reason: str
    not_media: bool = False


def find_media(paths):
    """Expand files and folders (recursively) into candidate media files.

    Returns (files, skipped): files is a sorted list of absolute Paths; skipped is a
    list of PassedOver (path, reason, not_media) for what was passed over and why. A file named
    explicitly is always a candidate, whatever its extension; inside folders only
    files with a known media extension are, and hidden files are ignored. Pipes,
    sockets and devices are never candidates.
    """
    files, skipped = [], []
    for given in paths:
        path = Path(os.path.abspath(os.path.expanduser(given)))  # '..' folded, symlinks kept
        if path.is_dir():
            found = _walk(path, skipped)
            if not found:
                skipped.append(PassedOver(str(path), "folder holds no video or photo files"))
            files.extend(found)
        elif not (path.exists() or path.is_symlink()):
            skipped.append(PassedOver(str(path), "no such file or folder"))
        elif reason := not_regular(path):
            skipped.append(PassedOver(str(path), reason))
        else:  # a regular file, or a dangling symlink that the scan reports as unreadable
            files.append(path)
    unique = sorted(set(files))
    return unique, skipped


def _walk(folder, skipped):
    found = []
    for root, dirs, names in os.walk(folder, onerror=lambda e: skipped.append(PassedOver(e.filename, e.strerror))):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = Path(root) / name
            if not media_kind(path):
                skipped.append(PassedOver(str(path), "not a video or photo (unknown file extension)", not_media=True))
            elif reason := not_regular(path):
                skipped.append(PassedOver(str(path), reason))
            else:
                found.append(path)
    return found


def file_checksum(path, chunk_size=1 << 20):
    """SHA-256 of the file's bytes: the identity of a source, whatever its name or folder."""
    digest = hashlib.sha256()
    with open_regular(path) as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
