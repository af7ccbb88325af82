#!/usr/bin/env bash
# openCryptoki's software token as a second PKCS#11 module: installs the
# Debian package when missing, starts the slot daemon (pkcsslotd) when it
# is not running, and initialises the software token (slot 3 in the
# package's opencryptoki.conf) with a label, SO PIN and user PIN when it
# is not initialised yet. Prints the settings the tests read.
#
# The token's PINs are 4 to 8 characters; its SO PIN starts as 87654321.
set -euo pipefail

SLOT=${OCK_SLOT:-3}
LABEL=${OCK_LABEL:-dlms-ock}
SO_PIN=${OCK_SO_PIN:-76543210}
USER_PIN=${OCK_USER_PIN:-24681357}

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v pkcsslotd >/dev/null 2>&1 && [ ! -x /usr/sbin/pkcsslotd ]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq opencryptoki
fi
export PATH="$PATH:/usr/sbin"

if ! pgrep -x pkcsslotd >/dev/null 2>&1; then
    as_root pkcsslotd
    sleep 1
fi

if ! pkcsconf -c "$SLOT" -t | grep -q 'TOKEN_INITIALIZED'; then
    printf '%s\n' "$LABEL" | as_root pkcsconf -c "$SLOT" -I -S 87654321 >/dev/null
    as_root pkcsconf -c "$SLOT" -P -S 87654321 -n "$SO_PIN"
    as_root pkcsconf -c "$SLOT" -u -S "$SO_PIN" -n 12345678
    as_root pkcsconf -c "$SLOT" -p -U 12345678 -n "$USER_PIN"
fi

pkcsconf -c "$SLOT" -t | grep -E 'Label|Flags'
echo "DLMS_PKCS11_MODULE=/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so"
echo "OCK_SLOT=$SLOT OCK_USER_PIN=$USER_PIN"
