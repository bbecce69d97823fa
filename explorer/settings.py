"""Django settings. Every deployment-specific value comes from an environment
variable read by the strict helpers in explorer/env.py; see README.md."""
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from explorer.env import (
    env_bool, env_choice, env_choice_or_path, env_dir, env_float, env_int, env_path_list, env_str, env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DJANGO_DEBUG", False)
# The development key is refused by every server that requires login (explorer/access.py).
DEVELOPMENT_SECRET_KEY = "dev-only-insecure-key-set-DJANGO_SECRET_KEY-in-production"
SECRET_KEY = env_str("DJANGO_SECRET_KEY", DEVELOPMENT_SECRET_KEY)
# Login is required everywhere except on a development server the product starts bound to a
# loopback address (explore, runserver 127.0.0.1:PORT); this setting requires it there too.
REQUIRE_LOGIN = env_bool("REQUIRE_LOGIN", False)
# Served over HTTPS (docker/: nginx terminates TLS and sets X-Forwarded-Proto): secure
# cookies, HSTS and a redirect of plain HTTP.
HTTPS = env_bool("DJANGO_HTTPS", False)
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)  # only the header; listing is a separate step
CSRF_TRUSTED_ORIGINS = [o for o in env_str("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]
ALLOWED_HOSTS = env_str("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")

# Where the product keeps everything it makes: database (SQLite default), broker
# folder (embedded default), frame stores, arrays, models, caches.
DATA_DIR = env_dir("DATA_DIR", BASE_DIR / "data")

# Folders the web UI and API may ingest from. The command line may ingest anywhere.
MEDIA_ROOTS = env_path_list("MEDIA_ROOTS")

# Xception weights for the features stage: "imagenet" (Keras cache/download),
# "random" (tests and demos, flagged in the UI), or a path to an .h5 file.
XCEPTION_WEIGHTS = env_choice_or_path("XCEPTION_WEIGHTS", "imagenet", ("imagenet", "random"))

# Sampling: frames are scaled to fit FRAME_WIDTH x FRAME_HEIGHT; one frame in
# SAMPLE_EVERY is kept, or SAMPLE_FPS frames per second when that is set.
FRAME_WIDTH = env_int("FRAME_WIDTH", 534, minimum=16)
FRAME_HEIGHT = env_int("FRAME_HEIGHT", 300, minimum=16)
SAMPLE_EVERY = env_int("SAMPLE_EVERY", 20, minimum=1)
SAMPLE_FPS = env_float("SAMPLE_FPS", 0.0, minimum=0.0) or None
# Files are sampled in tasks of up to this many bytes together (a large file alone).
SAMPLE_BATCH_BYTES = env_int("SAMPLE_BATCH_BYTES", 16 << 20, minimum=1)
# Photos larger than this many pixels are refused as possible decompression bombs.
MAX_IMAGE_PIXELS = env_int("MAX_IMAGE_PIXELS", 89_478_485, minimum=1)

# Embedding: Xception features in chunks of FEATURE_CHUNK frames (one work item
# each, shared by the workers), PCA to PCA_COMPONENTS, then the autoencoder.
FEATURE_BATCH = env_int("FEATURE_BATCH", 8, minimum=1)  # frames per network call (two crops each)
FEATURE_CHUNK = env_int("FEATURE_CHUNK", 256, minimum=1)
# The runtime and precision of the features (workers/pipeline/features.py): auto runs
# OpenVINO when it is installed, else Keras, in bfloat16 where the CPU has it. A precision
# names its runtime (openvino-bf16, openvino-f32; Keras's float32, mixed_bfloat16,
# mixed_float16), and a collection keeps the one it began with (workers/stages/describe.py).
FEATURE_RUNTIME = env_choice("FEATURE_RUNTIME", "auto", ("auto", "openvino", "keras"))
FEATURE_PRECISION = env_choice("FEATURE_PRECISION", "auto", ("auto", "float32", "mixed_bfloat16", "mixed_float16",
                                                             "openvino-bf16", "openvino-f32"))
if "auto" not in (FEATURE_RUNTIME, FEATURE_PRECISION) and \
        FEATURE_PRECISION.startswith("openvino-") != (FEATURE_RUNTIME == "openvino"):
    raise ImproperlyConfigured(f"FEATURE_PRECISION={FEATURE_PRECISION} is not a precision of "
                               f"FEATURE_RUNTIME={FEATURE_RUNTIME}: set one of them to auto")
# Where OpenVINO's conversion of Xception is kept when the weights' own folder cannot be written.
FEATURE_MODELS_DIR = env_dir("FEATURE_MODELS_DIR", DATA_DIR / "converted")
# Threads of each worker pool process's networks (Xception, the autoencoder); 0: all the
# cores, the runtimes' default, which measured fastest (workers/worker_side.py LimitThreads).
FEATURE_THREADS = env_int("FEATURE_THREADS", 0, minimum=0)
PCA_COMPONENTS = env_int("PCA_COMPONENTS", 256, minimum=2)
# The map's training (workers/pipeline/autoencoder.py): passes over the neighbour graph's
# weight, and at most this many steps, which bounds a large collection's training time.
AUTOENCODER_EPOCHS = env_int("AUTOENCODER_EPOCHS", 200, minimum=1)
AUTOENCODER_MAX_STEPS = env_int("AUTOENCODER_MAX_STEPS", 6000, minimum=1)
LAYOUT_ROTATION = env_float("LAYOUT_ROTATION", 0.0)  # degrees, applied after the stretch
# Clusters (workers/stages/clusters.py): made again after every new map when
# CLUSTER_AFTER_MAP, with the collection's last clustering's settings, or CLUSTER_METHOD
# over CLUSTER_OVER (clips: a clip's frames are clustered as one, by their mean).
CLUSTER_AFTER_MAP = env_bool("CLUSTER_AFTER_MAP", True)
CLUSTER_METHOD = env_choice("CLUSTER_METHOD", "auto", ("auto", "kmeans", "affinity"))
CLUSTER_K = env_int("CLUSTER_K", 8, minimum=1)  # for CLUSTER_METHOD=kmeans
CLUSTER_OVER = env_choice("CLUSTER_OVER", "clips", ("clips", "frames"))
# Copies (workers/stages/duplicates.py): found again after every new map when
# DUPLICATES_AFTER_MAP, with the collection's last threshold or DUPLICATES_THRESHOLD, the
# least calibrated score called a copy (0.5: as likely a copy as not).
DUPLICATES_AFTER_MAP = env_bool("DUPLICATES_AFTER_MAP", True)
DUPLICATES_THRESHOLD = env_float("DUPLICATES_THRESHOLD", 0.5, minimum=0.0, maximum=1.0)
# Also mirror images (a frame that is not the same picture is compared again mirrored: slower).
DUPLICATES_MIRRORED = env_bool("DUPLICATES_MIRRORED", False)
# The most video frames a detection decodes at an exact moment between two samples (each a
# seek and a few frames decoded, about 80 ms), to compare files sampled at other instants; 0: none.
DUPLICATES_EXACT_MOMENTS = env_int("DUPLICATES_EXACT_MOMENTS", 1000, minimum=0)
# The predict endpoint (explorer/predict_api.py) asks the predict worker (workers/predictor.py,
# `manage.py predictor`) at PREDICT_ADDRESS (a socket path, or host:port) for the features of
# an upload of at most PREDICT_MAX_UPLOAD_MB; of a video it reads PREDICT_MAX_VIDEO_SECONDS.
PREDICT_ADDRESS = env_str("PREDICT_ADDRESS", str(DATA_DIR / "predictor.sock"))
PREDICT_TIMEOUT = env_float("PREDICT_TIMEOUT", 30.0, minimum=1.0)  # under gunicorn's 60 s in docker/
PREDICT_MAX_UPLOAD_MB = env_int("PREDICT_MAX_UPLOAD_MB", 50, minimum=1)
PREDICT_MAX_VIDEO_SECONDS = env_int("PREDICT_MAX_VIDEO_SECONDS", 60, minimum=1, maximum=256)  # 2 crops a second
# The tagger's review (explorer/prediction_api.py): an unlabelled frame whose most probable
# label is less probable than this needs a person's look.
TAGGER_REVIEW_BELOW = env_float("TAGGER_REVIEW_BELOW", 0.6, minimum=0.0, maximum=1.0)

# The map: a clip is CLIP_SECONDS of a video around a clicked moment (similar clips are
# ranked by how their frames follow it); DISSIMILAR_CLIPS clips are chosen to be as
# different from each other as possible. Video files are served by Django with Range
# requests, or by nginx when MEDIA_ACCEL_REDIRECT names its internal location.
CLIP_SECONDS = env_float("CLIP_SECONDS", 6.0, minimum=0.1)
DISSIMILAR_CLIPS = env_int("DISSIMILAR_CLIPS", 8, minimum=1)
MEDIA_ACCEL_REDIRECT = env_str("MEDIA_ACCEL_REDIRECT", "")
DATA_ACCEL_REDIRECT = env_str("DATA_ACCEL_REDIRECT", "")  # nginx's location for DATA_DIR (posters)
# Posters larger than this many pixels are refused (20,000 x 20,000 is 400 million).
POSTER_MAX_PIXELS = env_int("POSTER_MAX_PIXELS", 1_000_000_000, minimum=1)
# Posters of more cells than this are refused: assigning frames to cells costs the worker
# about 20 s for 40,000 cells of a 200,000-frame map, and grows faster than the cells.
POSTER_MAX_CELLS = env_int("POSTER_MAX_CELLS", 40_000, minimum=1)
# Clip GIFs (workers/pipeline/palette.py): the longest clip and the widest frame a GIF may ask
# for, and the frames per second of the longest so that a GIF job stays a few seconds of work.
GIF_MAX_SECONDS = env_float("GIF_MAX_SECONDS", 30.0, minimum=0.1)
GIF_MAX_WIDTH = env_int("GIF_MAX_WIDTH", 960, minimum=16)
GIF_MAX_FPS = env_float("GIF_MAX_FPS", 25.0, minimum=0.1)
# Hover previews on the map: a GIF of PREVIEW_SECONDS around the frame, made the first time
# someone rests the pointer on it and kept with the map version.
PREVIEW_SECONDS = env_float("PREVIEW_SECONDS", 3.0, minimum=0.5, maximum=10.0)

INSTALLED_APPS = [
    "explorer",  # first: its runserver (explorer/management/commands) replaces staticfiles' own
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (the pages' JS and CSS, Leaflet) from the app's own process, so gunicorn
    # alone serves complete pages; behind nginx (docker/) nginx serves them first. Before
    # access control: they hold nothing private, and the login page needs its CSS.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "explorer.access.AccessControlMiddleware",  # every URL: signed in, editor for changes, CSRF
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
AUTH_PASSWORD_VALIDATORS = [{"NAME": f"django.contrib.auth.password_validation.{name}"} for name in (
    "UserAttributeSimilarityValidator", "MinimumLengthValidator", "CommonPasswordValidator",
    "NumericPasswordValidator")]
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 14 * 24 * 3600, minimum=60)

ROOT_URLCONF = "explorer.urls"
WSGI_APPLICATION = "explorer.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": False,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                           "django.contrib.auth.context_processors.auth",
                                           "explorer.views.access_context"]},
    }
]

DATABASES = {
    "default": dj_database_url.parse(
        env_url("DATABASE_URL", f"sqlite:///{DATA_DIR / 'explorer.sqlite3'}",
                schemes=("sqlite", "postgres", "postgresql")),
        conn_max_age=60,
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Workers and the web process write concurrently: wait for the lock rather than fail.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL;"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # Tests run a real worker process, so the test database must be a file it can open.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-explorer.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

STATIC_URL = "static/"
# Front-end libraries come from the npm registry (package.json; `npm ci`), never a CDN.
STATICFILES_DIRS = [BASE_DIR / "static", ("vendor/leaflet", BASE_DIR / "node_modules" / "leaflet" / "dist")]
# Where `collectstatic` copies them all, for nginx (docker/: a volume it shares with web).
STATIC_ROOT = env_dir("STATIC_ROOT", BASE_DIR / "staticfiles")
# WhiteNoise serves what STATIC_ROOT holds and, found once at start, what Django's finders
# find (the folders above, the apps' static/), so gunicorn needs no `collectstatic` first;
# a file in both is served from where the finders found it (the current one).
WHITENOISE_USE_FINDERS = True

REST_FRAMEWORK = {
    # One error shape for the whole API, documented on every operation (explorer/api_errors.py).
    "DEFAULT_SCHEMA_CLASS": "explorer.api_errors.ErrorDocumentingSchema",
    "EXCEPTION_HANDLER": "explorer.api_errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    # Who may do what is decided for every URL by explorer.access.AccessControlMiddleware;
    # these only tell DRF (and the OpenAPI schema) who the caller is. Token first: its
    # challenge makes an anonymous API call a 401.
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication",
                                       "rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PAGINATION_CLASS": "explorer.api_params.Pagination",  # every list, with checked limit and offset
    "URL_FORMAT_OVERRIDE": None,  # JSON only: no ?format= that would answer 404
    "DEFAULT_PERMISSION_CLASSES": [],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Embedding explorer API",
    "DESCRIPTION": "Collections, sources, ingest jobs and their progress.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,  # the schema describes the API, not itself
}

# --- Celery -------------------------------------------------------------------
# The broker is Redis when REDIS_URL is set. Otherwise an embedded default that
# needs no server: kombu's filesystem transport in DATA_DIR/broker (one machine).
REDIS_URL = env_url("REDIS_URL", None, schemes=("redis", "rediss", "unix"))
BROKER_DIR = DATA_DIR / "broker"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Must exceed the longest task: an unacknowledged task is redelivered after it.
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 4 * 3600, minimum=10),
    }
else:
    CELERY_BROKER_URL = "filesystem://"
    for _folder in ("queue", "control"):
        (BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        # Seconds an idle worker waits before looking for a message again (kombu's default
        # is 1): with acks-late and one message at a time, every task waited that long.
        "polling_interval": 0.1,
    }
CELERY_TASK_DEFAULT_QUEUE = env_str("TASK_QUEUE", "explorer")
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None  # progress lives in the durable Job row, not in Celery
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True  # a task is acknowledged only once it has finished...
CELERY_TASK_REJECT_ON_WORKER_LOST = True  # ...and redelivered if its process dies
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # long tasks: do not hoard messages
CELERY_TASK_TIME_LIMIT = env_int("TASK_TIME_LIMIT", 3 * 3600, minimum=10)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# How often a worker checks for work that was lost (broker restarted without
# persistence, a worker killed) and re-enqueues it; and when a heartbeat is stale.
RECOVERY_INTERVAL = env_float("RECOVERY_INTERVAL", 10.0, minimum=0.5)
# A fanned-out stage (sampling, features, cut-outs) sends its pieces in messages sized by
# work (SAMPLE_BATCH_BYTES, FEATURE_CHUNK), and in at least this many while it has that
# many pieces, so that every worker gets a share.
FANOUT_SPREAD = env_int("FANOUT_SPREAD", 16, minimum=1)
# A piece whose worker died this many times (out of memory, the time limit) is failed.
MAX_ATTEMPTS = env_int("MAX_ATTEMPTS", 3, minimum=1)
STALE_AFTER = env_float("STALE_AFTER", 120.0, minimum=1.0)

# The log's level (web process and workers, on standard error).
LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
# Log files of the processes the commands start (local workers: worker.log) and of the
# development server (web.log: every request; the terminal shows only those for pages).
LOG_DIR = DATA_DIR / "logs"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"pages_only": {"()": "explorer.logs.PagesOnly"},
                "broker_noise": {"()": "explorer.logs.FilesystemBrokerNoise"}},
    "formatters": {"django.server": {"()": "django.utils.log.ServerFormatter", "format": "[{server_time}] {message}",
                                     "style": "{"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler"},
        "web_log": {"class": "explorer.logs.LogFile", "filename": str(LOG_DIR / "web.log"),
                    "formatter": "django.server"},
        "pages": {"class": "logging.StreamHandler", "filters": ["pages_only"], "formatter": "django.server"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.server": {"handlers": ["web_log", "pages"], "level": "INFO", "propagate": False},
        # faiss reports at INFO each CPU build it tries before the one that loads.
        "faiss.loader": {"level": "WARNING"},
        "kombu.connection": {"filters": ["broker_noise"]},
    },
}
