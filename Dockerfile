FROM python:3.11-slim
# pg_dump and pg_restore for `hotspots db backup` / `db restore` (the compose `backup` service).
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-client && rm -rf /var/lib/apt/lists/*
# Install the package as a wheel would (migrations and tile SQL are package data), then drop the
# source copy, so the image runs the installed package and nothing from a checkout.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY geo ./geo
COPY web ./web
RUN pip install --no-cache-dir . && rm -rf /src
WORKDIR /app
ENV HOTSPOTS_HOST=0.0.0.0
EXPOSE 8000
ENTRYPOINT []
# docker-compose.yml migrates first; a bare `docker run` serves an already migrated DATABASE_URL.
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "4", "--worker-class", "gthread", "--threads", "8", "web:create_app()"]
