#!/usr/bin/env bash
# The main job: builds Tailgate (release) and serves the dashboard with 8 demo workers on
# http://127.0.0.1:8080/. Extra arguments go to `tailgate serve` (later flags win):
#
#   ./scripts/run.sh                       # http://127.0.0.1:8080/
#   ./scripts/run.sh --port 9000 --demo 2
#   ./scripts/run.sh --build-only          # build, do not start
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# The one system library the build needs beyond the Swift toolchain (compression).
if [ "$(dpkg-query -W -f='${db:Status-Status}' zlib1g-dev 2>/dev/null)" != "installed" ]; then
    echo "==> installing zlib1g-dev"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -q </dev/null
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q zlib1g-dev </dev/null
fi

echo "==> swift build -c release"
swift build -c release
BIN="$(swift build -c release --show-bin-path)/tailgate"

if [ "${1:-}" = "--build-only" ]; then
    echo "built $BIN"
    exit 0
fi

echo "==> $BIN serve --host 127.0.0.1 --port 8080 --demo 8 --demo-rate 5 $*"
exec "$BIN" serve --host 127.0.0.1 --port 8080 --demo 8 --demo-rate 5 "$@"
