#!/usr/bin/env bash
# Instructions per operation on a Cortex-M4 under QEMU, beside aes-gcm.
# Run from anywhere; CI runs it from the repository root through .ci/run.
#
#     bash footprint/qemu-count.sh [--limit RATIO] [--breakdown N]
#
# Builds footprint/count (thumbv7em-none-eabihf with footprint/.cargo/
# config.toml: the footprint image's profile and aes backend, linked for
# QEMU's mps2-an386), runs it under qemu-system-arm with one instruction
# per translation block and the execution log on, and counts the
# instructions each operation executes between the image's markers
# (footprint/qemu-count.py). Prints ours beside aes-gcm 0.11 doing the same
# GCM, the stack each call used, and where the instructions go.
#
# Fails when QEMU is missing and cannot be installed (it installs Debian's
# qemu-system-arm when missing, as root or through sudo), when the image
# finds our output differs from aes-gcm's, when repetitions of one operation
# count differently, or when a GCM ratio (ours / aes-gcm) is above its
# target, 0.9. --limit RATIO fails only above RATIO instead (the missed
# target is still printed). --breakdown N lists the N functions that run
# the most instructions in each GCM operation (default 8, 0 for none).
# --cargo-config KEY=VALUE builds with that cargo setting as well (in its
# own target directory), e.g. 'profile.release.opt-level=3' or
# 'target.thumbv7em-none-eabihf.rustflags=["--cfg", "cpubits=\"64\""]'.
set -euo pipefail

TARGET=thumbv7em-none-eabihf
MACHINE=mps2-an386
here="$(cd "$(dirname "$0")" && pwd)"
parser_args=()
cargo_config=()
while [ $# -gt 0 ]; do
    case "$1" in
    --limit | --breakdown)
        parser_args+=("$1" "${2:?$1 needs a value}")
        shift 2
        ;;
    --cargo-config)
        cargo_config+=(--config "${2:?$1 needs a value}")
        shift 2
        ;;
    *)
        echo "usage: qemu-count.sh [--limit RATIO] [--breakdown N] [--cargo-config KEY=VALUE]..." >&2
        exit 2
        ;;
    esac
done

if ! command -v qemu-system-arm >/dev/null; then
    echo "qemu-count: installing qemu-system-arm (Debian)"
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        sudo=(sudo)
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-arm >/dev/null
fi
if ! command -v qemu-system-arm >/dev/null; then
    echo "qemu-count: FAIL: qemu-system-arm is missing and could not be installed" >&2
    exit 1
fi
if ! qemu-system-arm -machine help | grep -q "^$MACHINE "; then
    echo "qemu-count: FAIL: this qemu-system-arm has no $MACHINE machine" >&2
    exit 1
fi
# One instruction per translation block, so each executed instruction is
# one line of the execution log: `-singlestep` up to QEMU 8, the tcg
# property after it.
if qemu-system-arm -help | grep -q '^-singlestep'; then
    one_insn=(-singlestep)
else
    one_insn=(-accel tcg,one-insn-per-tb=on)
fi

rustup target add "$TARGET" >/dev/null 2>&1 || true
rustup component add llvm-tools >/dev/null 2>&1 || true
nm=""
for t in "$(rustc --print sysroot)"/lib/rustlib/*/bin/llvm-nm /usr/bin/llvm-nm; do
    if [ -x "$t" ]; then
        nm="$t"
        break
    fi
done
if [ -z "$nm" ]; then
    echo "qemu-count: FAIL: llvm-nm not found (rustup component add llvm-tools)" >&2
    exit 1
fi

cd "$here/count" # footprint/.cargo/config.toml applies from here too
# The link script and the aes cfg come from footprint/.cargo/config.toml;
# RUSTFLAGS from the environment would replace them.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS
target_dir="$here/count/target"
if [ ${#cargo_config[@]} -gt 0 ]; then
    # Another build: its own target directory, so the default one stays.
    target_dir="$here/count/target/config-$(printf '%s' "${cargo_config[*]}" | cksum | cut -d' ' -f1)"
fi
cargo build -q --release --locked --target "$TARGET" --target-dir "$target_dir" "${cargo_config[@]}"
elf="$target_dir/$TARGET/release/count"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The log (about 200 MB) goes through a pipe to the parser, not to disk.
mkfifo "$work/log"
python3 "$here/qemu-count.py" --elf "$elf" --nm "$nm" --ops "$work/out" --log "$work/log" \
    "${parser_args[@]}" >"$work/table" &
parser=$!

started=$SECONDS
qemu_status=0
timeout 300 qemu-system-arm -M "$MACHINE" -nographic -monitor none -serial none \
    -semihosting-config enable=on,target=native \
    "${one_insn[@]}" -d exec,nochain -D "$work/log" \
    -kernel "$elf" >"$work/out" || qemu_status=$?
if [ "$qemu_status" -ne 0 ]; then
    # A QEMU that never opened the log leaves the parser waiting on it.
    kill "$parser" 2>/dev/null || true
    wait "$parser" 2>/dev/null || true
    cat "$work/out" >&2
    echo "qemu-count: FAIL: QEMU or the image exited with status $qemu_status" >&2
    exit 1
fi
parse_status=0
wait "$parser" || parse_status=$?

echo "Cortex-M4 ($MACHINE) under QEMU $(qemu-system-arm --version | head -n 1 | awk '{ print $4 }'):" \
    "footprint/count, opt-level \"s\", fat LTO, aes_backend_soft=\"compact\"${cargo_config[*]:+, with ${cargo_config[*]}}"
echo "(QEMU ran $((SECONDS - started)) s)"
echo
cat "$work/table"
exit "$parse_status"
