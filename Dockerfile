FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY geo ./geo
COPY web ./web
COPY sql ./sql
RUN pip install --no-cache-dir -e .
ENTRYPOINT []
CMD ["hotspots", "--help"]
