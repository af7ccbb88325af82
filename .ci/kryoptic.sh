#!/usr/bin/env bash
# kryoptic (a PKCS#11 software token in Rust, crates.io `kryoptic`,
# Apache-2.0) as a second PKCS#11 module: unlike SoftHSM2 it unwraps
# AES-ECB records inside the token, so the provider's in-token unpack
# path runs on it.
#
# Installs the system packages its build needs when missing (OpenSSL and
# SQLite headers, pkg-config, libclang for bindgen), fetches its source
# from crates.io through cargo, builds its cdylib once under
# target/kryoptic/build (later runs are no-op builds), and writes a
# configuration with eight sqlite-backed slots under target/kryoptic/.
#
#   .ci/kryoptic.sh                 prints the settings the tests read
#   .ci/kryoptic.sh CMD [ARGS...]   runs CMD with those settings, e.g.
#                                   .ci/kryoptic.sh cargo test -p dlms-sec-pkcs11
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=1.5.4
ROOT="$PWD/target/kryoptic"
LIB="$ROOT/build/release/libkryoptic_pkcs11.so"
CONF="$ROOT/kryoptic.conf"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
pkg-config --exists sqlite3 2>/dev/null || missing+=(libsqlite3-dev)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v clang >/dev/null 2>&1 || missing+=(clang)
ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || missing+=(libclang-dev)
if [ "${#missing[@]}" -gt 0 ]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

# The crate's source, as cargo fetches it for a project that depends on it.
fetch="$ROOT/fetch"
mkdir -p "$fetch/src"
cat >"$fetch/Cargo.toml" <<EOF
[package]
name = "kryoptic-fetch"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
kryoptic = { version = "=$VERSION", default-features = false }

[workspace]
EOF
: >"$fetch/src/lib.rs"
manifest=$(cargo metadata -q --format-version 1 --manifest-path "$fetch/Cargo.toml" |
    python3 -c 'import json, sys
print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "kryoptic"))')

# The AES, hash and RSA/EC minimum ("minimal"), linked against the
# system's OpenSSL 3 ("dynamic"), with the lock file the crate ships.
if [ ! -e "$LIB" ]; then
    echo "building kryoptic $VERSION (once; cached in $ROOT/build)" >&2
fi
start=$(date +%s)
cargo build -q --release --locked --manifest-path "$manifest" --target-dir "$ROOT/build" \
    --no-default-features --features minimal,kryoptic-lib/dynamic >&2
echo "kryoptic build: $(($(date +%s) - start)) s" >&2

# Eight slots, each its own sqlite token; the tests initialise a free one,
# or take over one a finished test process left.
mkdir -p "$ROOT/tokens"
if [ ! -e "$CONF" ]; then
    for slot in 1 2 3 4 5 6 7 8; do
        printf '[[slots]]\nslot = %d\ndbtype = "sqlite"\ndbargs = "%s/tokens/slot%d.sql"\n\n' \
            "$slot" "$ROOT" "$slot"
    done >"$CONF"
fi

settings=(
    "KRYOPTIC_CONF=$CONF"
    "DLMS_PKCS11_MODULE=$LIB"
    "DLMS_PKCS11_EXPECT_UNPACK=UnwrapEcb"
)
if [ "$#" -eq 0 ]; then
    printf '%s\n' "${settings[@]}"
else
    exec env "${settings[@]}" "$@"
fi
