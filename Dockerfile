# One image, both entry points: `mission-service` (default) and `mission-worker`.
# PYTHON_IMAGE: any image with Python >= 3.11 whose `pip` installs into the `python` on PATH
# (scripts/build-images makes one from Debian's packages where no registry is reachable).
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY missions ./missions
COPY mission_service ./mission_service
COPY worker_service ./worker_service
RUN pip install . && useradd --system --uid 10001 missions \
    && mkdir -p /var/lib/missions && chown missions /var/lib/missions

USER missions
# Listening beyond loopback needs TLS and tokens (MISSIONS_TLS_CERT, MISSIONS_TLS_KEY,
# MISSIONS_TOKENS_FILE) or an explicit MISSIONS_INSECURE=1: see docs/security.md. With
# TLS, point the HEALTHCHECK at the CA: `... healthcheck 127.0.0.1:50051 --tls-ca FILE`.
ENV MISSIONS_LISTEN=0.0.0.0:50051 \
    MISSIONS_STATE_DIR=/var/lib/missions
EXPOSE 50051
VOLUME ["/var/lib/missions"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s \
    CMD ["python", "-m", "mission_service.healthcheck", "127.0.0.1:50051"]
CMD ["mission-service"]
