"""Loaded with `-p tests.environment` (pytest.ini), before pytest-django reads the
settings: the test run's environment, so that the test process and the worker
processes it starts agree on the data folder, broker and queue."""
import os
import tempfile
import uuid
from pathlib import Path

TEST_DATA = Path(tempfile.mkdtemp(prefix="explorer-test-"))

os.environ["DATA_DIR"] = str(TEST_DATA / "data")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")  # the real Redis; database 15 for tests
os.environ["TASK_QUEUE"] = f"test-{uuid.uuid4().hex[:8]}"  # this run's own queue: no stale messages
os.environ["MEDIA_ROOTS"] = str(TEST_DATA / "media")
os.environ["RECOVERY_INTERVAL"] = "1"
os.environ["STALE_AFTER"] = "20"
os.environ["MAX_IMAGE_PIXELS"] = "4000000"  # so a small PNG can play the decompression bomb
os.environ["XCEPTION_WEIGHTS"] = "random"  # real Xception, untrained: no download, same shapes
os.environ["FEATURE_PRECISION"] = "float32"  # not auto: the same features on every CPU
os.environ["AUTOENCODER_EPOCHS"] = "5"
os.environ["FEATURE_CHUNK"] = "8"  # several chunks even for tiny test videos
(TEST_DATA / "media").mkdir(parents=True, exist_ok=True)


def pytest_sessionfinish(session, exitstatus):
    """Remove the run's data folder when all passed; keep it (with worker logs) otherwise."""
    import shutil

    if exitstatus == 0:
        shutil.rmtree(TEST_DATA, ignore_errors=True)
    else:
        print(f"\ntest data and worker logs kept in {TEST_DATA}")
