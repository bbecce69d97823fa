"""Finding media files and identifying them by content."""
import hashlib
import os
from pathlib import Path

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


def find_media(paths):
    """Expand files and folders (recursively) into candidate media files.

    Returns (files, skipped): files is a sorted list of absolute Paths; skipped is a
    list of (path, reason) for what was passed over and why. A file named
    explicitly is always a candidate, whatever its extension; inside folders only
    files with a known media extension are, and hidden files are ignored.
    """
    files, skipped = [], []
    for given in paths:
        path = Path(os.path.abspath(os.path.expanduser(given)))  # '..' folded, symlinks kept
        if path.is_file() or (path.is_symlink() and not path.is_dir()):
            files.append(path)
        elif path.is_dir():
            found = _walk(path, skipped)
            if not found:
                skipped.append((str(path), "folder holds no video or photo files"))
            files.extend(found)
        elif not path.exists():
            skipped.append((str(path), "no such file or folder"))
        else:
            skipped.append((str(path), "not a regular file or folder"))
    unique = sorted(set(files))
    return unique, skipped


def _walk(folder, skipped):
    found = []
    for root, dirs, names in os.walk(folder, onerror=lambda e: skipped.append((e.filename, e.strerror))):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = Path(root) / name
            if media_kind(path):
                found.append(path)
            else:
                skipped.append((str(path), "not a video or photo (unknown file extension)"))
    return found


def file_checksum(path, chunk_size=1 << 20):
    """SHA-256 of the file's bytes: the identity of a source, whatever its name or folder."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def folders_of(paths):
    """The folders that naming `paths` to an ingest allows files from: each folder named, and
    the folder of each file named (a file's own name may be a link that leads elsewhere)."""
    folders = []
    for given in paths:
        path = os.path.abspath(os.path.expanduser(given))
        folders.append(path if os.path.isdir(path) else os.path.dirname(path))
    return list(dict.fromkeys(folders))


def is_inside(path, folders):
    """Whether `path`, with every link and '..' resolved, lies inside one of `folders`: the one
    check of "inside the allowed folders", for what is ingested and for what is served."""
    real = os.path.realpath(path)
    for folder in folders:
        folder = os.path.realpath(folder)
        if real == folder or real.startswith(folder.rstrip(os.sep) + os.sep):
            return True
    return False
