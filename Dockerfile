# docker build -t hotline .
# docker run -p 8000:8000 -e TWILIO_AUTH_TOKEN=... -e IVR_PUBLIC_URL=https://... -v hotline:/data hotline
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ivr ./ivr
RUN python -m venv /venv && /venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 hotline && mkdir /data && chown hotline /data
COPY --from=build /venv /venv
WORKDIR /app
COPY migrations ./migrations
COPY routes ./routes
COPY prompts ./prompts
USER hotline
ENV PATH=/venv/bin:$PATH \
    IVR_ROUTES=/app/routes/hotline.yaml \
    IVR_PROMPTS=/app/prompts \
    IVR_MIGRATIONS=/app/migrations \
    IVR_DATABASE_URL=sqlite:////data/ivr.sqlite3
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
ENTRYPOINT ["ivr", "serve", "--host", "0.0.0.0", "--port", "8000"]
