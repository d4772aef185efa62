#!/usr/bin/env bash
# Make a PostgreSQL server available on loopback for the test suite and print its DSN.
# Installs Debian's package when it is missing (needs root, as on CI), starts the cluster when it
# is not running, and creates the test role and database once.
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then echo "PostgreSQL is not installed and this is not root" >&2; exit 1; fi
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
fi
version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | grep -q .; then pg_createcluster "$version" main >&2; fi
cluster=$(pg_lsclusters -h | head -n 1)
read -r ver name port status _ <<<"$cluster"
if [ "$status" != "online" ]; then pg_ctlcluster "$ver" "$name" start >&2; fi
for _ in $(seq 1 50); do pg_isready -h 127.0.0.1 -p "$port" -q && break; sleep 0.2; done
run_psql() { su postgres -c "psql -p $port -qtAc \"$1\""; }
[ "$(run_psql "SELECT 1 FROM pg_roles WHERE rolname='cds_test'")" = 1 ] || run_psql "CREATE ROLE cds_test LOGIN PASSWORD 'cds_test'" >&2
[ "$(run_psql "SELECT 1 FROM pg_database WHERE datname='cds_test'")" = 1 ] || run_psql "CREATE DATABASE cds_test OWNER cds_test" >&2
echo "postgresql://cds_test:cds_test@127.0.0.1:$port/cds_test"
