# The Airflow image of docker-compose.yaml: the official 3.3.2 image with this project's pinned requirements
# and the client programs the backups drive (pg_dump/pg_restore 15, gpg, zstd).
FROM apache/airflow:3.3.2-python3.11
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-15 gnupg zstd \
 && rm -rf /var/lib/apt/lists/*
USER airflow
COPY requirements.txt /requirements.txt
RUN pip install --no-cache-dir -r /requirements.txt
