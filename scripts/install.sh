#!/usr/bin/env bash
# Installs failover-router as a systemd service (run as root):
#   sudo scripts/install.sh [--binary PATH] [--config PATH] [--no-start]
#
#   binary  -> /usr/local/bin/failover-router          (default: dist/failover-router; build it with scripts/build)
#   unit    -> /etc/systemd/system/failover-router.service
#   config  -> /etc/failover-router/config.yaml        (default: ./config.yaml; an existing file is kept)
#   keys    -> /etc/failover-router/env                (KEY=value lines, mode 0600, created empty if missing)
#   docs    -> /usr/local/share/doc/failover-router/deploy.md
# then validates the config with `failover-router check`, reloads systemd and enables + (re)starts the service.
#
# DESTDIR=/some/dir stages everything under that folder instead (no systemctl, nothing started): for
# packaging, and for the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=dist/failover-router
config=config.yaml
start=1
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --config) config="$2"; shift 2 ;;
    --no-start) start=0; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install: unknown argument \"$1\" (see --help)" >&2; exit 2 ;;
  esac
done

DESTDIR="${DESTDIR:-}"
if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
  echo "install: run as root (or set DESTDIR to stage the files in a folder)" >&2
  exit 1
fi
[ -x "$binary" ] || { echo "install: $binary not found or not executable: build it first with scripts/build" >&2; exit 1; }
[ -f "$config" ] || { echo "install: config $config not found" >&2; exit 1; }

bin_dir="$DESTDIR/usr/local/bin"
etc_dir="$DESTDIR/etc/failover-router"
unit_dir="$DESTDIR/etc/systemd/system"
doc_dir="$DESTDIR/usr/local/share/doc/failover-router"

install -d -m 0755 "$bin_dir" "$unit_dir" "$doc_dir"
install -d -m 0755 "$etc_dir"
install -m 0755 "$binary" "$bin_dir/failover-router"
install -m 0644 scripts/failover-router.service "$unit_dir/failover-router.service"
[ -f docs/deploy.md ] && install -m 0644 docs/deploy.md "$doc_dir/deploy.md"

if [ -e "$etc_dir/config.yaml" ]; then
  echo "keeping the existing $etc_dir/config.yaml"
else
  # world-readable: the service runs as a dynamic user; secrets belong in the env file, not here
  install -m 0644 "$config" "$etc_dir/config.yaml"
  echo "installed $etc_dir/config.yaml (from $config)"
fi
if [ ! -e "$etc_dir/env" ]; then
  umask 077
  printf '# API keys for failover-router (KEY=value lines), read by systemd as root.\n# DEEPSEEK_API_KEY=\n# ANTHROPIC_API_KEY=\n# OPENAI_API_KEY=\n' > "$etc_dir/env"
  chmod 0600 "$etc_dir/env"
  echo "created $etc_dir/env (mode 0600): put the provider keys there"
fi

# validate with the installed binary, with the keys of the env file as the service will see them (parsed as
# KEY=value lines like systemd does, not run as shell), from / so that no ./.env gets in the way
check_env=()
while IFS= read -r line || [ -n "$line" ]; do
  line="${line#"${line%%[![:space:]]*}"}"
  case "$line" in ''|'#'*|';'*) continue ;; esac
  key="${line%%=*}"
  if [ "$key" = "$line" ] || ! [[ "$key" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then continue; fi
  value="${line#*=}"
  if [[ "$value" =~ ^\"(.*)\"$ ]] || [[ "$value" =~ ^\'(.*)\'$ ]]; then value="${BASH_REMATCH[1]}"; fi
  check_env+=("$key=$value")
done < "$etc_dir/env"
if ! (cd / && env ${check_env[@]+"${check_env[@]}"} "$bin_dir/failover-router" check --config "$etc_dir/config.yaml"); then
  echo "install: $etc_dir/config.yaml is invalid: fix it (and the keys in $etc_dir/env), then run this again" >&2
  exit 1
fi

if [ -n "$DESTDIR" ] || ! command -v systemctl >/dev/null 2>&1; then
  echo "staged under ${DESTDIR:-/} (systemctl not run)"
  exit 0
fi
systemctl daemon-reload
if [ "$start" = 1 ]; then
  systemctl enable failover-router.service
  systemctl restart failover-router.service
  systemctl --no-pager --lines=5 status failover-router.service || true
else
  echo "installed; start with: systemctl enable --now failover-router"
fi
