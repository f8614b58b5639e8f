# Stand-in for python:3.11-slim, built by ../standin_bases.sh only when the real image cannot be
# pulled. Its interpreter is the Python 3.11 that runs the tests (python.tar, its standard
# library without tests, IDLE or tkinter), installed under /usr/local as in the real image,
# because Debian bookworm's own 3.11.2 is older than requirements.lock allows (soupsieve 4.1.3
# needs 3.11.5). When the tests run on Debian's own python3.11, python.tar is empty and
# Debian's python3 is installed instead. Either way a venv at /opt/venv comes first on PATH as
# `python` and `pip`. The CA bundle is the building machine's, so pip reaches the package index
# through its TLS proxy; it lives here only, never in the project's Dockerfiles.
FROM galaxy-standin/bookworm-minbase

ADD python.tar /usr/local/
RUN apt-get update \
    && if [ -x /usr/local/bin/python3.11 ]; then \
         apt-get install -y --no-install-recommends libexpat1 libffi8 libncursesw6 libnsl2 \
           libreadline8 libsqlite3-0 libssl3 libtirpc3 \
         && ldconfig \
         && ln -s python3.11 /usr/local/bin/python3 \
         && interpreter=/usr/local/bin/python3.11; \
       else \
         apt-get install -y --no-install-recommends python3 python3-venv \
         && interpreter=/usr/bin/python3; \
       fi \
    && "$interpreter" -m venv /opt/venv \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* /usr/share/locale/*

COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY pip.conf /etc/pip.conf

ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8
CMD ["python"]
