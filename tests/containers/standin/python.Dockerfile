# Stand-in for python:3.11-slim, built by ../standin_bases.sh only when the real image cannot be
# pulled: Debian bookworm's Python 3.11 in a venv at /opt/venv, whose python and pip come first
# on PATH as /usr/local/bin does in the real image. The CA bundle is the building machine's, so
# pip reaches the package index through its TLS proxy; it lives here only, never in the
# project's Dockerfiles.
FROM galaxy-standin/bookworm-minbase

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && python3 -m venv /opt/venv \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* /usr/share/locale/*

COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY pip.conf /etc/pip.conf

ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8
CMD ["python"]
