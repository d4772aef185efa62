# radiculopathy-cds: the same `cds-service serve` as everywhere else, as a non-root user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    CDS_SERVICE_DB=/var/lib/cds-service/ledger.sqlite3 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/cds-metrics

WORKDIR /app
COPY pyproject.toml README.md ./
COPY cds_service ./cds_service
COPY hooks ./hooks
COPY fixtures ./fixtures
RUN pip install --no-cache-dir . \
 && useradd --system --uid 10001 --home /app cds \
 && mkdir -p /var/lib/cds-service && chown cds /var/lib/cds-service

USER cds
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/readyz').status != 200)"
# TLS is terminated in front (reverse proxy / ingress); bind all interfaces inside the container.
CMD ["cds-service", "serve", "--host", "0.0.0.0", "--port", "8080"]
