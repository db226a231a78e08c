#!/usr/bin/env bash
# docker-entrypoint.sh [postgres ARGS... | -ARG... | CMD...] - entrypoint of
# localhost/devicefleet/postgres, the subset of the official postgres image's that the chart uses:
#   POSTGRES_PASSWORD  superuser password (required unless POSTGRES_HOST_AUTH_METHOD=trust)
#   POSTGRES_USER      superuser name (default postgres)
#   POSTGRES_DB        database created at init (default POSTGRES_USER)
#   PGDATA             data directory (default /var/lib/postgresql/data)
#   POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD (default scram-sha-256),
#   /docker-entrypoint-initdb.d/*.sh|*.sql run once after initdb; PGPORT sets the port.
# An empty PGDATA is initialised (initdb, `host all all all <method>` in pg_hba.conf,
# listen_addresses='*' from the image's postgresql.conf.sample, the database created), then
# postgres runs in the foreground. Started as root, it prepares the directories and re-runs
# itself as postgres (999). Only PGDATA, /var/run/postgresql (socket) and /tmp are written.
set -Eeuo pipefail

say() { printf 'docker-entrypoint: %s\n' "$*" >&2; }

if [[ "${1:-}" == -* ]]; then
  set -- postgres "$@"
fi
if [[ "${1:-}" != postgres ]]; then
  exec "$@"
fi

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

if [[ "$(id -u)" == 0 ]]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA"
  chown postgres:postgres /var/run/postgresql 2>/dev/null || true
  chmod 00700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

mkdir -p "$PGDATA"
chmod 00700 "$PGDATA" 2>/dev/null || true
chmod 03775 /var/run/postgresql 2>/dev/null || true

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
  : "${POSTGRES_USER:=postgres}"
  : "${POSTGRES_DB:=$POSTGRES_USER}"
  auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
  if [[ -z "${POSTGRES_PASSWORD:-}" && "$auth" != trust ]]; then
    say "PGDATA ($PGDATA) is empty and POSTGRES_PASSWORD is not set; set it (or"
    say "POSTGRES_HOST_AUTH_METHOD=trust to allow connections without a password)"
    exit 1
  fi
  say "initialising $PGDATA (superuser $POSTGRES_USER, database $POSTGRES_DB)"
  # Word splitting of POSTGRES_INITDB_ARGS is intended (as in the official image).
  # shellcheck disable=SC2086
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "${POSTGRES_PASSWORD:-}") \
    ${POSTGRES_INITDB_ARGS:-} >&2
  printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

  # A socket-only server for the set-up, then stopped.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >&2
  psql_init=(psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username "$POSTGRES_USER")
  if [[ "$POSTGRES_DB" != postgres ]]; then
    "${psql_init[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";' >&2
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) say "running $f"; bash "$f" ;;
      *.sql) say "running $f"; "${psql_init[@]}" --dbname "$POSTGRES_DB" -f "$f" >&2 ;;
      *.sql.gz) say "running $f"; gunzip -c "$f" | "${psql_init[@]}" --dbname "$POSTGRES_DB" >&2 ;;
      *) ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >&2
  say "init done; starting postgres"
fi

exec "$@"
