#!/usr/bin/env bash
# Install (or upgrade) the connector as a systemd service. Idempotent: run it again
# after `git pull` to upgrade. It never overwrites an admin's edited settings or
# mapping files; it only adds files that are missing.
#
#   sudo deploy/install.sh              the real thing
#   DESTDIR=/tmp/root deploy/install.sh --no-venv
#                                       into a staging root: no users, no chown, no systemctl
#
# Options:
#   --no-venv    do not (re)build /opt/lapor-connector/.venv (tests, or a venv managed
#                by other means)
#   --python P   the Python (3.11 or newer) for the venv (default: python3)
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${DESTDIR:-}
USER_NAME=lapor-connector
PYTHON=python3
VENV=1
while [ $# -gt 0 ]; do
  case "$1" in
    --no-venv) VENV=0 ;;
    --python) PYTHON=$2; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

OPT=$ROOT/opt/lapor-connector
ETC=$ROOT/etc/lapor-connector
STATE=$ROOT/var/lib/lapor-connector
say() { echo "install.sh: $*"; }

# A staging root (DESTDIR) or a machine without systemd: files only.
LIVE=1
if [ -n "$ROOT" ] || ! command -v systemctl >/dev/null 2>&1; then LIVE=0; fi
if [ "$LIVE" = 1 ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (sudo), or set DESTDIR for a staging root" >&2
  exit 2
fi

# 1. The system user (fixed, so `sudo -u lapor-connector ...` works).
install -D -m 0644 "$SRC/deploy/sysusers.d/lapor-connector.conf" \
  "$ROOT/usr/lib/sysusers.d/lapor-connector.conf"
if [ "$LIVE" = 1 ] && ! id "$USER_NAME" >/dev/null 2>&1; then
  if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers /usr/lib/sysusers.d/lapor-connector.conf
  else
    useradd --system --home-dir /var/lib/lapor-connector --no-create-home \
      --shell /usr/sbin/nologin "$USER_NAME"
  fi
  say "created system user $USER_NAME"
fi

# 2. Folders. Settings and mappings: root-owned, readable; credentials: root only;
#    state: the service user only.
install -d -m 0755 "$OPT" "$ETC" "$ETC/mappings" "$ROOT/etc/systemd/system" \
  "$ROOT/usr/local/bin"
install -d -m 0700 "$ETC/credentials" "$STATE"
if [ "$LIVE" = 1 ]; then chown "$USER_NAME:$USER_NAME" "$STATE"; chmod 0700 "$STATE"; fi

# 3. The program and its venv under /opt.
# Without the demo settings.toml: from /opt, commands must find the service's file.
tar -C "$SRC" --exclude=./.venv --exclude=./var --exclude=./.git --exclude='*.pyc' \
  --exclude=./settings.toml --exclude=./build --exclude='./*.egg-info' \
  --exclude=./.pytest_cache --exclude=./.mypy_cache --exclude=./.ruff_cache -cf - . \
  | tar -C "$OPT" -xf -
if [ "$VENV" = 1 ]; then
  if [ ! -x "$OPT/.venv/bin/python" ]; then "$PYTHON" -m venv "$OPT/.venv"; fi
  "$OPT/.venv/bin/python" -m pip install -q --upgrade pip
  "$OPT/.venv/bin/python" -m pip install -q "$OPT"
  say "installed $("$OPT/.venv/bin/lapor-connector" --version) into /opt/lapor-connector/.venv"
fi
ln -sfn /opt/lapor-connector/.venv/bin/lapor-connector "$ROOT/usr/local/bin/lapor-connector"

# 4. Units, settings, mappings. The units are ours (local changes go in drop-ins:
#    `systemctl edit lapor-connector`); settings and mappings are the admin's.
#    lapor-connector-web.service is the officer's desk, beside the daemon.
for unit in lapor-connector.service lapor-connector-web.service \
    lapor-connector-backup.service lapor-connector-backup.timer; do
  install -m 0644 "$SRC/deploy/$unit" "$ROOT/etc/systemd/system/$unit"
done
if [ -e "$ETC/settings.toml" ]; then
  say "kept /etc/lapor-connector/settings.toml"
else
  install -m 0644 "$SRC/deploy/settings.toml" "$ETC/settings.toml"
  say "wrote /etc/lapor-connector/settings.toml: set lapor.base_url in it"
fi
for f in "$SRC"/mappings/*.toml; do
  name=$(basename "$f")
  if [ -e "$ETC/mappings/$name" ]; then
    say "kept /etc/lapor-connector/mappings/$name"
  else
    install -m 0644 "$f" "$ETC/mappings/$name"
  fi
done

# 5. systemd.
if [ "$LIVE" = 1 ]; then
  systemctl daemon-reload
  systemctl enable lapor-connector.service lapor-connector-web.service >/dev/null
  say "enabled lapor-connector.service and lapor-connector-web.service (the desk)"
  # The nightly backup (SQLite). On PostgreSQL: disable it and schedule pg_dump instead.
  if grep -Eq '^url = "sqlite:' "$ETC/settings.toml"; then
    systemctl enable --now lapor-connector-backup.timer >/dev/null
    say "enabled lapor-connector-backup.timer (nightly backup into /var/lib/lapor-connector/backup)"
  else
    say "storage is not SQLite: lapor-connector-backup.timer not enabled (use pg_dump; README)"
  fi
fi
cat <<EOF
install.sh: done. Next:
  sudoedit /etc/lapor-connector/settings.toml     # lapor.base_url = "https://..."
  credentials: /etc/lapor-connector/credentials/LAPOR_CLIENT_ID and LAPOR_CLIENT_SECRET
  sudo systemctl restart lapor-connector lapor-connector-web
  sudo -u $USER_NAME lapor-connector status
  the desk: sudo -u $USER_NAME lapor-connector users add LOGIN --name NAME --role admin --password-stdin
            then nginx with TLS in front of web.listen (README "The officer's desk")
EOF
