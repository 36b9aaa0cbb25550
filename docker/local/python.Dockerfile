# A stand-in for python:3.11-slim built from Debian's packages alone (scripts/build-images),
# for machines that reach Debian's archive and PyPI but no image registry.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}

# The host's locally added CA certificates (the build context's ca/ directory): behind a
# TLS-inspecting proxy, pip fails with CERTIFICATE_VERIFY_FAILED without them.
COPY ca/ /usr/local/share/ca-certificates/
RUN apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        ca-certificates python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && update-ca-certificates \
    && python3 -m venv /opt/python
# A venv first on PATH gives `python` and `pip` as the official image has them, and lets
# pip install into it (Debian's own Python refuses: PEP 668).
ENV PATH=/opt/python/bin:$PATH \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
