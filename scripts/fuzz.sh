#!/usr/bin/env bash
# Fuzz the safetensors reader with libFuzzer, AddressSanitizer and UBSan.
#
#   scripts/fuzz.sh                  60 s, build in build-fuzz/
#   FUZZ_SECONDS=600 scripts/fuzz.sh
#   FUZZ_BUILD_DIR=/tmp/f scripts/fuzz.sh
#
# Configures a clang build of tests/fuzz in its own directory, writes a seed corpus of valid files
# (the fuzzer's generator mode), then fuzzes. Exits non-zero if the fuzzer finds a crash, a
# sanitizer report, a leak or a broken invariant; the input that did it is saved under
# $FUZZ_BUILD_DIR/artifacts/ (replay: $FUZZ_BUILD_DIR/fuzz_safetensors <file>).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=${FUZZ_SECONDS:-60}

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
CC=${FUZZ_CC:-clang} CXX=${FUZZ_CXX:-clang++} \
  cmake -S "$root/tests/fuzz" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target fuzz_safetensors

fuzzer=$build/fuzz_safetensors
corpus=$build/corpus/safetensors
artifacts=$build/artifacts
mkdir -p "$corpus" "$artifacts"
LNF_FUZZ_WRITE_SEEDS=$corpus "$fuzzer"

# Tokens of the format, so mutations speak its language.
dict=$build/safetensors.dict
cat >"$dict" <<'DICT'
"\"dtype\""
"\"shape\""
"\"data_offsets\""
"\"__metadata__\""
"\"F32\""
"\"F16\""
"\"BF16\""
"\"F64\""
"\"I32\""
"\"I64\""
"\"U8\""
"\"BOOL\""
"\"F8_E4M3\""
"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"
"[0,0]"
"[]"
"null"
"18446744073709551615"
"9223372036854775807"
"4294967296"
"-1"
"1e9"
"\"\\u0000\""
"\"\\ud800\""
DICT

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
echo "fuzzing the safetensors reader for ${seconds} s (corpus: $corpus)"
"$fuzzer" "$corpus" -dict="$dict" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$artifacts/" -print_final_stats=1
echo "no crash in ${seconds} s"
