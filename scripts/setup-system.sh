#!/usr/bin/env bash
# Installs the system packages the project needs on Debian 12, only when they are missing:
# a PostgreSQL server and the PostGIS build matching it. Safe to run again (it then does nothing).
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "setup-system: not root and no sudo; install postgresql and postgresql-<major>-postgis-3 yourself" >&2
    exit 1
  fi
fi

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@"
}

# `python3 -m venv` needs Debian's python3-venv (ensurepip); a fresh Debian 12 lacks it.
if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
  echo "setup-system: installing python3-venv (for the project's .venv)"
  apt_install python3-venv
fi

# The newest PostgreSQL server already installed, else Debian 12's default (15).
major=""
for v in 17 16 15 14; do
  if [ -x "/usr/lib/postgresql/$v/bin/initdb" ]; then major=$v; break; fi
done
if [ -z "$major" ]; then
  echo "setup-system: installing PostgreSQL 15 server"
  apt_install postgresql-15
  major=15
fi

if [ ! -f "/usr/share/postgresql/$major/extension/postgis.control" ]; then
  echo "setup-system: installing PostGIS for PostgreSQL $major"
  apt_install "postgresql-$major-postgis-3"
fi

# Headless Chromium drives the map-page test (tests/web/test_map_page.py): a real browser, offline.
if ! command -v chromium >/dev/null 2>&1; then
  echo "setup-system: installing chromium (headless browser for the map test)"
  apt_install chromium
fi

# QGIS's own OGC API - Features provider reads the server in tests/web/test_qgis.py (headless,
# Debian's python3-qgis under the system python3; no GUI).
if ! /usr/bin/python3 -c "import qgis.core" >/dev/null 2>&1; then
  echo "setup-system: installing python3-qgis and qgis-providers (QGIS as a test client)"
  apt_install python3-qgis qgis-providers
fi

# The embedded cluster runs as `postgres` when we are root; Debian's server package creates that user.
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  echo "setup-system: the postgres user is missing (reinstall postgresql-common)" >&2
  exit 1
fi
echo "setup-system: PostgreSQL $major with PostGIS $(sed -n "s/^default_version *= *'\(.*\)'/\1/p" /usr/share/postgresql/$major/extension/postgis.control) ready"
echo "setup-system: $(chromium --version 2>/dev/null || echo chromium missing)"
