#!/usr/bin/env bash
# Cortex-M3: the core built for thumbv7m-none-eabi with polyval's 32-bit
# software backend pinned (`--cfg cpubits="32"`), and a check that the
# GHASH code it links has no long multiply (UMULL, SMULL, UMLAL, SMLAL:
# early-terminating, so operand-dependent, on the M3). polyval's 32-bit
# backend multiplies with MUL (32 x 32 -> 32 bits), which takes one cycle
# on the M3 whatever the operands. See docs/security.md, "Cortex-M3".
#
#     bash benches/m3-ghash-check.sh
#
# Needs the thumbv7m-none-eabi target (`rustup target add thumbv7m-none-eabi`)
# and llvm-objdump (the rustup llvm-tools component, or on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

target=thumbv7m-none-eabi
dir=target/m3-check
RUSTFLAGS='--cfg cpubits="32"' CARGO_TARGET_DIR=$dir \
    cargo build --release --no-default-features --target $target

objdump=$(find "$(rustc --print sysroot)/lib/rustlib" -name llvm-objdump -type f 2>/dev/null | head -n 1)
objdump=${objdump:-$(command -v llvm-objdump || true)}
if [ -z "$objdump" ]; then
    echo "llvm-objdump not found (rustup component add llvm-tools)" >&2
    exit 1
fi

rlibs=("$dir/$target"/release/deps/libpolyval-*.rlib)
if [ ! -e "${rlibs[0]}" ]; then
    echo "no polyval rlib under $dir: the build did not link polyval" >&2
    exit 1
fi
fail=0
for rlib in "${rlibs[@]}"; do
    long=$("$objdump" -d "$rlib" | grep -ciE '\s(umull|smull|umlal|smlal)\s' || true)
    mul=$("$objdump" -d "$rlib" | grep -ciE '\smuls?\s' || true)
    echo "$(basename "$rlib"): $long long multiplies, $mul MUL"
    # No long multiply, and MUL present: the 32-bit backend was taken
    # (the 64-bit one has long multiplies and no MUL).
    if [ "$long" -ne 0 ] || [ "$mul" -eq 0 ]; then
        fail=1
    fi
done
if [ "$fail" -ne 0 ]; then
    echo "polyval for $target is not its 32-bit backend" >&2
    exit 1
fi
echo "polyval for $target: the 32-bit backend (MUL only)"
