#!/usr/bin/env bash
# Fuzz with libFuzzer, AddressSanitizer and UBSan: the safetensors reader (fuzz_safetensors), and the
# corpus reader with SentencePiece encoding and token batching (fuzz_corpus, when SentencePiece is
# installed). FUZZ_SECONDS is the budget of the whole stage, split evenly between the targets.
#
#   scripts/fuzz.sh                  60 s in all, build in build-fuzz/
#   FUZZ_SECONDS=600 scripts/fuzz.sh
#   FUZZ_TARGETS=corpus scripts/fuzz.sh       only some targets (default: every one built)
#   FUZZ_BUILD_DIR=/tmp/f scripts/fuzz.sh
#
# Configures a clang build of tests/fuzz in its own directory, writes each target's seed corpus
# (the fuzzer's generator mode), then fuzzes. Exits non-zero if a fuzzer finds a crash, a sanitizer
# report, a leak or a broken invariant; the input that did it is saved under
# $FUZZ_BUILD_DIR/artifacts/<target>/ (replay: $FUZZ_BUILD_DIR/fuzz_<target> <file>).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=${FUZZ_SECONDS:-60}

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
CC=${FUZZ_CC:-clang} CXX=${FUZZ_CXX:-clang++} \
  cmake -S "$root/tests/fuzz" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

# fuzz_corpus exists only where SentencePiece was found.
targets=()
for t in ${FUZZ_TARGETS:-safetensors corpus}; do
  if [[ $t == corpus ]] && ! grep -q "fuzz_corpus" "$build/build.ninja" "$build/Makefile" 2>/dev/null; then
    echo "fuzz_corpus: not configured (no SentencePiece); skipped"
    continue
  fi
  targets+=("$t")
done
(( ${#targets[@]} > 0 )) || { echo "no fuzz target to run"; exit 1; }
cmake --build "$build" --target "${targets[@]/#/fuzz_}"
per_target=$(( seconds / ${#targets[@]} ))
(( per_target > 0 )) || per_target=1

# Tokens of the formats, so mutations speak their language.
cat >"$build/safetensors.dict" <<'DICT'
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
cat >"$build/corpus.dict" <<'DICT'
"\x0a"
"\x0d\x0a"
"\xef\xbb\xbf"
"\x00"
"\xc3\xa4"
"\xe2\x96\x81"
"\xe2\x81\x87"
"\xf0\x9f\x99\x82"
"\xed\xa0\x80"
"\xf4\x90\x80\x80"
"\xc0\x80"
"\x09"
" "
DICT

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for t in "${targets[@]}"; do
  fuzzer=$build/fuzz_$t
  corpus=$build/corpus/$t
  artifacts=$build/artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  LNF_FUZZ_WRITE_SEEDS=$corpus "$fuzzer"
  echo "fuzzing fuzz_$t for ${per_target} s (corpus: $corpus)"
  "$fuzzer" "$corpus" -dict="$build/$t.dict" -max_total_time="$per_target" -max_len=4096 -timeout=10 \
    -rss_limit_mb=2048 -artifact_prefix="$artifacts/" -print_final_stats=1
done
echo "no crash in ${seconds} s (${targets[*]}: ${per_target} s each)"
