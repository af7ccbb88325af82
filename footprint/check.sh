#!/usr/bin/env bash
# Meter-firmware footprint check. Run from anywhere; CI runs
# it from the repository root through .ci/run.
#
# Builds footprint/ (a #![no_std] #![no_main] Cortex-M4F image that runs
# the meter endpoint: restore, associate, expect_hls, unprotect, serve
# (key_transfer, security_activate, HLS-5 pass 3), protect, release) for
# thumbv7em-none-eabihf at opt-level "s" with fat LTO and the
# aes crate's compact software backend, then:
#   * reports .text + .rodata and fails when it exceeds the budget;
#   * breaks it down by crate from the symbol table;
#   * fails when any core::fmt code is linked, or when core::panicking::
#     panic_fmt does more than the bare loop of our panic handler;
#   * reports stack use per entry point when a nightly toolchain can emit
#     .stack_sizes (informative only: never fails).
set -euo pipefail

BUDGET=24576 # bytes of .text + .rodata (24 KiB)
TARGET=thumbv7em-none-eabihf

here="$(cd "$(dirname "$0")" && pwd)"
cd "$here" # footprint/.cargo/config.toml applies only from here
# The link script and the aes cfg come from footprint/.cargo/config.toml;
# RUSTFLAGS from the environment would replace them.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS
target_dir="$here/target"
elf="$target_dir/$TARGET/release/footprint"

rustup target add "$TARGET" >/dev/null 2>&1
rustup component add llvm-tools >/dev/null 2>&1 || true

# llvm tools: rustup's llvm-tools first, then the system's.
tool() {
    local t
    for t in "$(rustc --print sysroot)"/lib/rustlib/*/bin/"$1" "/usr/bin/$1"; do
        if [ -x "$t" ]; then
            echo "$t"
            return
        fi
    done
    if command -v "$1" >/dev/null; then
        command -v "$1"
        return
    fi
    echo "footprint: $1 not found (rustup component add llvm-tools)" >&2
    exit 1
}
SIZE="$(tool llvm-size)"
NM="$(tool llvm-nm)"
OBJDUMP="$(tool llvm-objdump)"

cargo build --release --locked --target "$TARGET" --target-dir "$target_dir"

# ---- sizes ---------------------------------------------------------------
# llvm-size -A: "name size addr" (decimal).
read -r text_size text_addr < <("$SIZE" -A "$elf" | awk '$1 == ".text" { print $2, $3 }')
read -r ro_size ro_addr < <("$SIZE" -A "$elf" | awk '$1 == ".rodata" { print $2, $3 }')
vt_size="$("$SIZE" -A "$elf" | awk '$1 == ".vector_table" { print $2 }')"
data_size="$("$SIZE" -A "$elf" | awk '$1 == ".data" { print $2 }')"
bss_size="$("$SIZE" -A "$elf" | awk '$1 == ".bss" { print $2 }')"
total=$((text_size + ro_size))

# ---- breakdown by crate ----------------------------------------------------
# Symbols inside .text or .rodata, demangled, legacy escapes decoded, hash
# dropped; each counted under the crate its path starts with (for
# `<T as Trait>::f`, T's crate, or the trait's when T is a primitive).
# footprint::api::* are one-line shims around each library call: what they
# hold is library code inlined into them.
syms="$(mktemp)"
trap 'rm -f "$syms"' EXIT
"$NM" --print-size --size-sort --demangle --radix=d "$elf" |
    awk -v ta="$text_addr" -v ts="$text_size" -v ra="$ro_addr" -v rs="$ro_size" '
        NF >= 4 {
            a = $1 + 0; s = $2 + 0
            if ((a >= ta && a < ta + ts) || (a >= ra && a < ra + rs)) {
                name = $4; for (i = 5; i <= NF; i++) name = name " " $i
                print s "\t" name
            }
        }' |
    sed -e 's/\$LT\$/</g; s/\$GT\$/>/g; s/\$u20\$/ /g; s/\$RF\$/\&/g; s/\$BP\$/*/g' \
        -e 's/\$C\$/,/g; s/\$u5b\$/[/g; s/\$u5d\$/]/g; s/\$u7b\$/{/g; s/\$u7d\$/}/g' \
        -e 's/\.\./::/g; s/^\([0-9]*\t\)_</\1</; s/::h[0-9a-f]\{16\}$//' >"$syms"

group_of() {
    awk -F'\t' '
        function crate(n,   p, first, rest) {
            sub(/^<+/, "", n)
            first = n; sub(/[: <>,\[\]&*(].*$/, "", first)
            if (first ~ /^(u8|u16|u32|u64|u128|usize|i8|i16|i32|i64|isize|bool|char|str)$/ || first == "") {
                p = index(n, " as ")
                if (p > 0) { rest = substr(n, p + 4); sub(/^<+/, "", rest); first = rest; sub(/[: <>,].*$/, "", first) }
            }
            return first
        }
        {
            name = $2; c = crate(name)
            if (name ~ /^footprint::api::/) g = "dlms-sec, inlined into footprint::api shims"
            else if (c == "dlms_sec") g = "dlms-sec"
            else if (c == "aes" || c == "cipher") g = "aes (+ cipher trait code)"
            else if (c == "ghash" || c == "polyval" || c == "universal_hash") g = "ghash/polyval (+ universal-hash)"
            else if (c == "aes_kw") g = "aes-kw"
            else if (c == "core") g = "core"
            else if (c == "compiler_builtins" || name ~ /^__aeabi_/) g = "compiler_builtins"
            else if (c == "footprint" || c == "cortex_m_rt" || c == "__rustc" || name !~ /::/) g = "firmware: main, cortex-m-rt, handlers"
            else g = "other (" c ")"
            print $1 "\t" g "\t" name
        }' "$syms"
}

echo
echo "Meter firmware image: $TARGET, opt-level \"s\", fat LTO, panic = abort,"
echo "aes_backend_soft=\"compact\" (${elf#"$here"/})"
echo
printf '%-48s %8s %7s\n' "flash (.text + .rodata) by crate" "bytes" "share"
printf '%-48s %8s %7s\n' "------------------------------------------------" "--------" "-------"
group_of | awk -F'\t' -v total="$total" '
    { sum[$2] += $1; all += $1 }
    END {
        for (g in sum) printf "%s\t%d\n", g, sum[g]
        printf "%s\t%d\n", "(no symbol: padding, anonymous constants)", total - all
    }' | sort -t$'\t' -k2,2nr | awk -F'\t' -v total="$total" '
    { printf "%-48s %8d %6.1f%%\n", $1, $2, 100 * $2 / total }'
printf '%-48s %8s %7s\n' "------------------------------------------------" "--------" "-------"
printf '%-48s %8d %7s\n' ".text" "$text_size" ""
printf '%-48s %8d %7s\n' ".rodata" "$ro_size" ""
printf '%-48s %8d %6.1f%%\n' "total .text + .rodata" "$total" "$(awk -v t="$total" -v b="$BUDGET" 'BEGIN { print 100 * t / b }')"
printf '%-48s %8d %7s\n' "budget" "$BUDGET" ""
echo
printf 'Not counted: .vector_table %d (cortex-m-rt, no device interrupts), .data %d, .bss %d (RAM).\n' \
    "$vt_size" "$data_size" "$bss_size"

echo
echo "Largest symbols:"
group_of | sort -t$'\t' -k1,1nr | awk -F'\t' 'NR <= 15 { printf "  %6d  %s\n", $1, $3 }'

# ---- no formatting machinery -----------------------------------------------
status=0
echo
fmt_syms="$("$NM" --demangle "$elf" | grep -E 'core(::|\.\.)fmt' || true)"
if [ -n "$fmt_syms" ]; then
    echo "FAIL: core::fmt is linked:"
    echo "$fmt_syms" | awk 'NR <= 20 { print "  " $0 }'
    status=1
else
    echo "core::fmt: not linked"
fi
# (No early-exiting reader in these pipes: with pipefail, a writer killed by
# SIGPIPE would fail the script.)
panic_fmt="$("$NM" "$elf" | awk '/panic_fmt/ && !n++ { print $3 }')"
if [ -n "$panic_fmt" ]; then
    calls="$("$OBJDUMP" -d --no-show-raw-insn --disassemble-symbols="$panic_fmt" "$elf" |
        grep -cE '^\s+[0-9a-f]+:\s+(bl|blx)\b' || true)"
    if [ "$calls" != "0" ]; then
        echo "FAIL: core::panicking::panic_fmt calls out (more than the bare loop of the panic handler)"
        status=1
    else
        echo "core::panicking::panic_fmt: the panic handler's bare loop, nothing called"
    fi
fi

if [ "$total" -gt "$BUDGET" ]; then
    echo "FAIL: .text + .rodata = $total bytes, over the budget of $BUDGET bytes by $((total - BUDGET))"
    status=1
else
    echo "budget: $total of $BUDGET bytes ($((BUDGET - total)) to spare)"
fi

# ---- stack use (informative) -----------------------------------------------
# Nightly's -Z emit-stack-sizes writes each function's frame into
# .stack_sizes; stack.py adds up the deepest direct-call path under each
# entry point. Nightly exposes target_feature="v7" on this target, which
# makes cpubits pick 64-bit words in aes and polyval; `cpubits="32"` keeps
# the nightly image the same code as the stable one measured above.
echo
toolchains="$(rustup toolchain list)"
if grep -q '^nightly' <<<"$toolchains" && command -v python3 >/dev/null; then
    stack_dir="$target_dir/stack-sizes"
    if rustup +nightly target add "$TARGET" >/dev/null 2>&1 &&
        cargo +nightly rustc -q --release --target "$TARGET" --target-dir "$stack_dir" \
            --config "target.$TARGET.rustflags=[\"--cfg\", \"cpubits=\\\"32\\\"\"]" \
            -- -Z emit-stack-sizes; then
        python3 "$here/stack.py" "$stack_dir/$TARGET/release/footprint" \
            "$(tool llvm-readobj)" "$OBJDUMP" ||
            echo "stack use: not measured (stack.py failed; informative only)"
    else
        echo "stack use: not measured (the nightly build failed; informative only)"
    fi
else
    echo "stack use: not measured (needs a nightly toolchain and python3; informative only)"
fi

exit "$status"
