#!/usr/bin/env bash
# Interoperability run: the dlms-sec CLI against pyca `cryptography` and
# gurux-dlms, both installed here from PyPI into a venv under target/.
#
#   bash interop/run.sh [--seed N] [--cases M]
#
# The last line of output is `N passed, M failed` (failures are OUR
# mismatches only); the exit status is non-zero if any.
set -euo pipefail
cd "$(dirname "$0")/.."

CRYPTOGRAPHY_VERSION=48.0.0
GURUX_VERSION=1.0.203
venv=target/interop-venv

# A bare Debian python3 may lack the venv module (ensurepip).
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    else
        echo "interop: python3 -m venv is unavailable; install python3-venv" >&2
        exit 2
    fi
fi

want="cryptography==$CRYPTOGRAPHY_VERSION gurux-dlms==$GURUX_VERSION"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.pins" 2>/dev/null)" != "$want" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    # shellcheck disable=SC2086
    "$venv/bin/pip" install -q --disable-pip-version-check $want
    echo "$want" >"$venv/.pins"
fi

cargo build -q --release -p dlms-sec-cli --bin dlms-sec

exec "$venv/bin/python" interop/interop.py --cli target/release/dlms-sec "$@"
