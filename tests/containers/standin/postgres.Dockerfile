# Stand-in for postgres:16, built by ../standin_bases.sh only when the real image cannot be
# pulled: Debian bookworm's PostgreSQL (15; bookworm has no 16) behind an entrypoint that does
# what compose relies on in the real image: POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB,
# /docker-entrypoint-initdb.d/*.sql and *.sh on the first start, PGDATA=/var/lib/postgresql/data,
# TCP on 5432 on all addresses, pg_isready on PATH.
FROM galaxy-standin/bookworm-minbase

# no "main" cluster from the package: the entrypoint creates the one in $PGDATA
RUN mkdir -p /etc/postgresql-common/createcluster.d \
    && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/no-main.conf \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \
    && mkdir -p /docker-entrypoint-initdb.d /var/run/postgresql /var/lib/postgresql/data \
    && chown postgres:postgres /var/run/postgresql /var/lib/postgresql/data

COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh

ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
