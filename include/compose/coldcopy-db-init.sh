#!/bin/sh
# coldcopy-db's first start: the application database and PgBouncer's auth_query role (its password from
# the environment; migration 203 then finds the role and adds pgbouncer.get_auth()).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --set pw="$PGBOUNCER_AUTH_PASSWORD" <<'SQL'
CREATE DATABASE coldcopy;
CREATE ROLE pgbouncer LOGIN NOINHERIT PASSWORD :'pw';
SQL
