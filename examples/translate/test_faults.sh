#!/usr/bin/env bash
# The translate program under faults (ctest label `faults`: translate_faults_*), on the generated
# corpus of test_lib.sh. Each check is what a careful user expects when something goes wrong.
#
#   test_faults.sh <translate binary> <work dir> <check>
#
# checks:
#   options  every kind of option error (a bad number, an unknown option, a value out of range, no
#            subcommand, a missing value, a bad choice) exits 1 with CLI11's message; --help exits 0.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/test_lib.sh" "$@"

case $check in
options)
  # <expected pattern> <arguments...>: exit status 1 and the message.
  option_error() {
    local want=$1; shift
    "$bin" "$@" > opt.log 2>&1
    expect_status 1 opt.log "translate $*"
    expect_in opt.log "$want" "translate $*: the message"
  }
  option_error "Could not convert: --lenpen = x" train --lenpen x                  # conversion (CLI11: 104)
  option_error "--layers: Value abc not in range" train --layers abc             # a check (105)
  option_error "--beam: Value 0 not in range 1 to 64" train --beam 0             # a range (105)
  option_error "--gemm-math: f16 not in \{f32,bf16\}" --gemm-math f16 train       # a choice (105)
  option_error "A subcommand is required" --threads 2                            # required (106)
  option_error "argument was not expected: --bogus" train --bogus                # extras (109)
  option_error "--lr: 1 required FLOAT:POSITIVE missing" train --lr              # a missing value (114)
  "$bin" --help > help.log 2>&1
  expect_status 0 help.log "--help"
  expect_in help.log "Subcommands:" "--help lists the subcommands"
  "$bin" train --help > train_help.log 2>&1
  expect_status 0 train_help.log "train --help"
  ;;

*) fail "unknown check '$check'" ;;
esac
echo "ok: $check"
