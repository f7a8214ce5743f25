# The hotline as an image: `ivr serve` on 0.0.0.0:8000 as an unprivileged user (0.0.0.0 of
# the container's own network: the host's -p decides who reaches it).
#
#   docker build -t hotline .
#   docker run --rm -p 127.0.0.1:8000:8000 --env-file .env -e IVR_TRUSTED_PROXIES=172.17.0.1 \
#     -v hotline-data:/data hotline
#
# Published on the host's loopback only: the port is plain http (the dashboard's token is
# posted in clear over it), for a TLS proxy on this host. That proxy reaches the container from
# the default bridge's gateway (172.17.0.1; `docker network inspect bridge` says which), the one
# peer whose X-Forwarded-For is believed: with the default 127.0.0.1 every user would share the
# gateway's address in the sign-in throttle (`-e` beats a value in `--env-file`).
# Nothing secret is in the image: TWILIO_AUTH_TOKEN, IVR_PUBLIC_URL, IVR_SECRET_KEY and
# IVR_DATABASE_URL come from the environment at run time. Without IVR_DATABASE_URL the
# hotline uses SQLite in the /data volume (one instance only); production is PostgreSQL:
# see docker-compose.yml and docs/production.md. Other commands run the same way, given only
# what they need (the migration reads the database's URL and password, not the Twilio token;
# here both from the shell's environment):
#   docker run --rm -e IVR_DATABASE_URL -e PGPASSWORD hotline db upgrade
#   docker run --rm hotline routes check /app/routes/hotline.yaml

# One pinned base for both stages (tests/test_shipping.py checks they match): the venv built in
# the first runs on the second's Python at the same path. Bump both lines together.
FROM python:3.11.13-slim-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer: reused until the lock changes. Exactly the versions
# in requirements.lock (scripts/lock writes it; the suite runs them): a rebuild of this
# release, a rollback's, gets the same ones.
COPY requirements.lock ./
RUN python -m venv /venv \
 && /venv/bin/pip install --no-cache-dir --disable-pip-version-check -r requirements.lock
# Then the project itself, as a wheel (templates and static files are package data; the
# README is the package's long description).
COPY pyproject.toml README.md ./
COPY ivr ./ivr
RUN /venv/bin/pip wheel --no-cache-dir --disable-pip-version-check --no-deps --wheel-dir /wheels . \
 && /venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps /wheels/ivr-*.whl \
 && /venv/bin/pip check

FROM python:3.11.13-slim-bookworm
LABEL org.opencontainers.image.title="hotline" \
      org.opencontainers.image.description="Exchange support hotline (Twilio Voice IVR)"
# Graphviz's `dot` draws the dashboard's Tree page (without it the page shows Mermaid text).
# Pinned to bookworm's version, as the base is: bump it when Debian's security updates do.
RUN apt-get update \
 && apt-get install -y --no-install-recommends graphviz=2.42.2-7+deb12u1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-log-init --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin hotline \
 && install -d -o hotline -g hotline -m 0750 /data
COPY --from=build /venv /venv
WORKDIR /app
# Data files the package finds through settings (the defaults point into a source checkout).
# Owned by root: the hotline reads them but cannot change them. Mount your own tree over
# /app/routes and /app/prompts (or set IVR_ROUTES / IVR_PROMPTS) to ship a different one.
COPY migrations ./migrations
COPY routes ./routes
COPY prompts ./prompts
ENV PATH=/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    IVR_ROUTES=/app/routes/hotline.yaml \
    IVR_PROMPTS=/app/prompts \
    IVR_MIGRATIONS=/app/migrations \
    IVR_DATABASE_URL=sqlite:////data/ivr.sqlite3
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000
# Liveness only (the process answers); /readyz also checks the database. Slim images have no
# curl, so Python asks; urlopen raises, and the check fails, on anything but a 2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# `ivr serve` by default; any other ivr command by naming it (e.g. `db upgrade`).
ENTRYPOINT ["ivr"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
