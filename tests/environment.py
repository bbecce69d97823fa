"""Loaded with `-p tests.environment` (pytest.ini), before pytest-django reads the
settings: the test run's environment, so that the test process and the worker
processes it starts agree on the data folder, broker and queue.

Everything a run writes goes under one folder, TEST_DATA (/tmp/explorer-test-*):
the data folder, the media, the logs, and every temporary file, since TMPDIR points
inside it (pytest's tmp_path, Chromium's profile, TensorFlow's autograph files and
the workers' own temporary files all follow TMPDIR). The run removes that folder when
it ends, pass or fail (or Ctrl-C); a run that did not pass leaves only its logs there,
cut to their last LOG_LIMIT bytes in all."""
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

TEST_DATA = Path(tempfile.mkdtemp(prefix="explorer-test-"))
TEST_LOGS = TEST_DATA / "logs"  # worker and web-server logs: what a failed run leaves behind
LOG_LIMIT = 9_000_000  # bytes: under 10 MB, with room for the notes that say where a log was cut

(TEST_DATA / "tmp").mkdir()
os.environ["TMPDIR"] = tempfile.tempdir = str(TEST_DATA / "tmp")
os.environ["DATA_DIR"] = str(TEST_DATA / "data")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")  # the real Redis; database 15 for tests
os.environ["TASK_QUEUE"] = f"test-{uuid.uuid4().hex[:8]}"  # this run's own queue: no stale messages
os.environ["MEDIA_ROOTS"] = str(TEST_DATA / "media")
os.environ["RECOVERY_INTERVAL"] = "1"
os.environ["STALE_AFTER"] = "20"
os.environ["MAX_IMAGE_PIXELS"] = "4000000"  # so a small PNG can play the decompression bomb
os.environ["XCEPTION_WEIGHTS"] = "random"  # real Xception, untrained: no download, same shapes
os.environ["FEATURE_PRECISION"] = "float32"  # not auto: the same features on every CPU
# Keras, the network the features are defined by, for every test but tests/test_feature_runtime.py,
# which runs OpenVINO (and Keras beside it) itself: what auto means depends on what is installed
# and on the CPU (bfloat16), so a test that left it to auto would test another thing elsewhere.
os.environ["FEATURE_RUNTIME"] = "keras"
os.environ["AUTOENCODER_EPOCHS"] = "5"
os.environ["FEATURE_CHUNK"] = "8"  # several chunks even for tiny test videos
(TEST_DATA / "media").mkdir(parents=True, exist_ok=True)
TEST_LOGS.mkdir()

_outcome = []  # what the end of the run did with TEST_DATA, for the terminal summary


@pytest.hookimpl(trylast=True)  # after the session's fixtures have stopped the workers and the web server
def pytest_sessionfinish(session, exitstatus):
    if exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        shutil.rmtree(TEST_DATA, ignore_errors=True)
        return
    logs = keep_only_the_logs()
    if not logs:
        shutil.rmtree(TEST_DATA, ignore_errors=True)
        return
    size = sum(path.stat().st_size for path in logs)
    _outcome.append(f"test data removed; {len(logs)} log(s) of this run ({size / 1e6:.1f} MB) kept in {TEST_LOGS}")


def pytest_terminal_summary(terminalreporter):
    for line in _outcome:
        terminalreporter.write_sep("-", line)


def keep_only_the_logs(limit=LOG_LIMIT):
    """Reduce TEST_DATA to TEST_LOGS: gather every *.log of the run there (the web server's,
    the workers', those a test wrote under its tmp_path), delete everything else, and cut
    the logs to their ends so that together they hold at most `limit` bytes."""
    for folder, subfolders, files in os.walk(TEST_DATA):
        if Path(folder) == TEST_LOGS:
            subfolders.clear()
            continue
        for name in files:
            path = Path(folder, name)
            # Chromium's profile keeps LevelDB journals named 000003.log: data, not logs.
            if name.endswith(".log") and not re.fullmatch(r"\d+\.log", name) and not path.is_symlink():
                target = TEST_LOGS / f"{path.parent.name}-{name}"
                while target.exists():
                    target = target.with_name(f"{target.stem}+.log")
                os.replace(path, target)
    for path in TEST_DATA.iterdir():
        if path == TEST_LOGS:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    logs = sorted(TEST_LOGS.iterdir(), key=lambda path: path.stat().st_size)
    budget = limit
    for count, path in enumerate(logs):
        share = budget // (len(logs) - count)  # the smaller logs kept whole leave more to the bigger
        keep_the_end(path, share)
        budget -= path.stat().st_size
    return logs


def keep_the_end(path, size):
    """Cut a file to its last lines that fit in `size` bytes, saying so on its first line."""
    total = path.stat().st_size
    if total <= size:
        return
    with open(path, "rb") as handle:
        handle.seek(total - max(0, size - 200))  # 200: room for the note
        end = handle.read()
    end = end[end.find(b"\n") + 1:]  # from the first whole line
    path.write_bytes(f"[cut: the first {total - len(end)} of {total} bytes of this log are left out]\n".encode() + end)
