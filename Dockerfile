# The Airflow image of docker-compose.yaml: the official 3.3.2 image with this project's pinned requirements
# and the client programs the backups drive (gpg, zstd, and pg_dump/pg_restore of PostgreSQL 17 from the
# PostgreSQL project's apt repository: a client dumps servers of its major version and older, and Supabase
# builds projects on 15 and 17; coldcopy.pg_tools refuses an older client than the server).
FROM apache/airflow:3.3.2-python3.11
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg zstd \
 && install -d /usr/share/postgresql-common/pgdg \
 && curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
      https://www.postgresql.org/media/keys/ACCC4CF8.asc \
 && echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt $(. /etc/os-release && echo "$VERSION_CODENAME")-pgdg main" \
      > /etc/apt/sources.list.d/pgdg.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-17 \
 && rm -rf /var/lib/apt/lists/*
USER airflow
COPY requirements.txt /requirements.txt
RUN pip install --no-cache-dir -r /requirements.txt
