# Small non-root image. Build: docker build -t deskbridge .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY bot ./bot
COPY bridges ./bridges
COPY migrations ./migrations
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=build /install /usr/local
RUN useradd --create-home --uid 10001 deskbridge && mkdir /data && chown deskbridge /data
USER deskbridge
WORKDIR /data
ENV DATABASE_URL=sqlite+aiosqlite:////data/deskbridge.db HTTP_LISTEN=0.0.0.0:8080 \
    WEBHOOK_LISTEN=0.0.0.0:8081
# The SQLite database lives here: mount a volume (docker run -v deskbridge-data:/data).
VOLUME /data
# /healthz and /metrics; the webhook server when WEBHOOK_URL is set.
EXPOSE 8080 8081
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD python -c "import sys,urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"
ENTRYPOINT ["deskbridge"]
CMD ["run"]
