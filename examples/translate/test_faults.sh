#!/usr/bin/env bash
# The translate program under faults (ctest label `faults`: translate_faults_*), on the generated
# corpus of test_lib.sh. Each check is what a careful user expects when something goes wrong.
#
#   test_faults.sh <translate binary> <work dir> <check>
#
# checks:
#   options  every kind of option error (a bad number, an unknown option, a value out of range, no
#            subcommand, a missing value, a bad choice) exits 1 with CLI11's message; --help exits 0.
#   input    bad inputs: `translate --input <directory>` and a missing file exit 1 naming them; a NUL
#            byte exits 1 naming the line; a byte-order mark is removed and reported; a source over
#            the model's 1,022 tokens is reported with the limit and the line; `prepare` skips and
#            counts NUL pairs and reports a removed byte-order mark; `train` works with --out and
#            --data paths holding a space and a comma (SentencePiece gets them as fields).
#   disk     (needs a tmpfs mount: root; skipped with a message elsewhere) a full disk: `prepare`
#            and `translate --output` exit 1 naming the file and the reason, leave no partial or
#            .tmp file, and an older output file stays as it was.
#   signal   SIGINT before the first update: exit 130, "nothing was saved", no checkpoint, and the
#            same command then runs; a second SIGINT stops at once (while SentencePiece trains) and
#            the same command still runs; SIGINT during the final test decoding ends it (exit 130,
#            the checkpoints complete) instead of being ignored.
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

input)
  prepare data > prepare.log 2>&1 || { cat prepare.log; fail "prepare"; }
  # Paths with a space and a comma: SentencePiece trains, the run checkpoints and translates.
  mkdir -p "corpus, v1" && cp data/* "corpus, v1/"
  "$bin" --threads 2 train --data "corpus, v1" --out "my run,1" "${tiny[@]}" --max-steps 2 --checkpoint-every 2 \
    > spaces.log 2>&1
  expect_status 0 spaces.log "train with --data 'corpus, v1' and --out 'my run,1'"
  [[ -f "my run,1/spm.model" && -f "my run,1/checkpoint_2.safetensors" ]] || fail "no vocabulary or checkpoint in 'my run,1'"
  translate() { "$bin" --threads 2 translate --out "my run,1" --beam 1 "$@"; }
  translate --input raw > dir.log 2>&1
  expect_status 1 dir.log "translate --input <a directory>"
  expect_in dir.log "--input 'raw' is a directory" "translate --input <a directory>: the message"
  translate --input missing.txt > missing.log 2>&1
  expect_status 1 missing.log "translate --input <a missing file>"
  expect_in missing.log "cannot open --input 'missing.txt'" "a missing --input is named"
  printf 'eins\nzw\0ei\n' > nul.txt
  translate --input nul.txt > nul.out 2> nul.log
  expect_status 1 nul.log "translate: input with a NUL byte"
  expect_in nul.log "'nul.txt' line 2: a NUL byte" "a NUL byte: file and line named"
  printf '\xef\xbb\xbfeins\nzwei\n' > bom.txt
  translate --input bom.txt > bom.out 2> bom.log
  expect_status 0 bom.log "translate: input with a byte-order mark"
  expect_in bom.log "removed a UTF-8 byte-order mark at the start of bom.txt" "a byte-order mark is reported"
  [[ $(wc -l < bom.out) == 2 ]] || fail "translate: 2 lines with a byte-order mark in, $(wc -l < bom.out) out"
  # A source line of 1,100 tokens (every word one piece or more): cut to the model's 1,022, said so.
  { "$python" -c "print(' '.join(['eins'] * 1100))"; echo zwei; } > long.txt
  translate --input long.txt > long.out 2> long.log
  expect_status 0 long.log "translate: an over-long line"
  expect_in long.log "1 source sentence\(s\) longer than the model's limit of 1022 tokens .* \(line\(s\) 1\)" \
    "an over-long line: counted, limit and line named"
  [[ $(wc -l < long.out) == 2 ]] || fail "translate: 2 lines in, $(wc -l < long.out) out"
  # prepare: a byte-order mark and a NUL byte in user files.
  { printf '\xef\xbb\xbf'; head -n 3 raw/train.de; printf 'zw\0ei\n'; } > t.de
  head -n 4 raw/train.en > t.en
  "$bin" prepare --data d --train-src t.de --train-tgt t.en --valid-src t.de --valid-tgt t.en --test-src t.de \
    --test-tgt t.en > prep.log 2>&1
  expect_status 0 prep.log "prepare with a byte-order mark and a NUL byte"
  expect_in prep.log "^train: 4 lines, 3 pairs kept; .*1 with a NUL byte.*removed a UTF-8 byte-order mark" \
    "prepare: NUL pair and byte-order mark reported"
  cmp -s <(head -n 3 raw/train.de) d/train.de || fail "prepare: d/train.de is not the 3 clean lines without the mark"
  ;;

disk)
  mkdir -p full
  if ! mount -t tmpfs -o size=64k tmpfs full 2> mount.log; then
    echo "SKIPPED: cannot mount a tmpfs here ($(cat mount.log)); the full-disk checks need root"
    exit 0
  fi
  trap 'umount "$work/full" 2>/dev/null' EXIT
  prepare data > prepare.log 2>&1 || { cat prepare.log; fail "prepare"; }
  train run --max-steps 2 --checkpoint-every 2 > train.log 2>&1
  expect_status 0 train.log "training"
  # prepare: a training split larger than the disk.
  for _ in $(seq 150); do cat raw/train.de; done > big.de
  for _ in $(seq 150); do cat raw/train.en; done > big.en
  "$bin" prepare --data full/d --train-src big.de --train-tgt big.en --valid-src raw/valid.de \
    --valid-tgt raw/valid.en --test-src raw/test.de --test-tgt raw/test.en > prep.log 2>&1
  expect_status 1 prep.log "prepare onto a full disk"
  expect_in prep.log "cannot write 'full/d/train\.de': No space left on device" "prepare: file and reason named"
  [[ -z $(ls -A full/d) ]] || { ls -la full/d; fail "prepare left files on the full disk"; }
  # translate --output: an older output stays, nothing partial appears.
  rm -rf full/d
  echo "older output" > full/out.txt
  head -c 50000 /dev/zero > full/pad
  for _ in $(seq 300); do cat raw/test.de; done > many.de
  "$bin" --threads 2 translate --out run --beam 1 --input many.de --output full/out.txt > out.log 2>&1
  expect_status 1 out.log "translate --output onto a full disk"
  expect_in out.log "cannot write 'full/out\.txt': No space left on device.*unchanged" "translate --output: path and reason"
  [[ $(cat full/out.txt) == "older output" ]] || fail "translate --output changed the older file"
  [[ ! -e full/out.txt.tmp ]] || fail "translate --output left full/out.txt.tmp"
  ;;

signal)
  prepare data > prepare.log 2>&1 || { cat prepare.log; fail "prepare"; }
  # A training split large enough that SentencePiece takes a moment: the signal arrives before the
  # first update. It is sent once the handler is installed (SIGINT in /proc/<pid>/status SigCgt).
  cp -r data big && for _ in $(seq 100); do cat data/train.de; done > big/train.de &&
    for _ in $(seq 100); do cat data/train.en; done > big/train.en
  start_bg() { exec "$bin" --threads 2 train --data big --out "$1" "${tiny[@]}" --max-steps 3 --checkpoint-every 3; }
  handler_set() {
    local mask
    mask=$(sed -n 's/^SigCgt:[[:space:]]*//p' "/proc/$1/status" 2>/dev/null)
    [[ -n $mask ]] && (( 0x$mask & 2 ))
  }
  interrupt_early() {  # interrupt_early <out> <signals>
    start_bg "$1" > "$1.log" 2>&1 &
    local pid=$! k
    for _ in $(seq 5000); do handler_set $pid && break; sleep 0.001; done
    for ((k = 0; k < $2; k++)); do kill -INT $pid; sleep 0.05; done
    wait $pid
  }
  interrupt_early early 1
  expect_status 130 early.log "SIGINT before the first update"
  expect_in early.log "^interrupted before the first update: nothing was saved \(no checkpoint in early\); start again with the same command, without --resume" \
    "SIGINT before the first update: what was saved and how to go on"
  ! compgen -G "early/checkpoint_*" > /dev/null || fail "a checkpoint appeared although no update was made"
  "$bin" --threads 2 train --data big --out early "${tiny[@]}" --max-steps 3 --checkpoint-every 3 > again.log 2>&1
  expect_status 0 again.log "the same command after the interrupt"
  interrupt_early twice 2
  expect_status 130 twice.log "two SIGINTs"
  expect_in twice.log "second interrupt: stopping now" "the second SIGINT stops at once"
  "$bin" --threads 2 train --data big --out twice "${tiny[@]}" --max-steps 3 --checkpoint-every 3 > twice2.log 2>&1
  expect_status 0 twice2.log "the same command after two SIGINTs"
  # SIGINT during the final test decoding (4,000 sentences, beam 5: many seconds of decoding).
  cp -r data longtest && for _ in $(seq 250); do cat data/test.de; done > longtest/test.de &&
    for _ in $(seq 250); do cat data/test.en; done > longtest/test.en
  with_test=()
  for a in "${tiny[@]}"; do [[ $a == --no-test ]] || with_test+=("$a"); done
  ( exec "$bin" --threads 2 train --data longtest --out final "${with_test[@]}" --max-steps 2 --checkpoint-every 2 \
      > final.log 2>&1 ) &
  pid=$!
  for _ in $(seq 20000); do [[ -e final/checkpoint_2.safetensors ]] && break; sleep 0.001; done
  sleep 0.5
  kill -INT $pid
  wait $pid
  expect_status 130 final.log "SIGINT during the final test decoding"
  expect_in final.log "^interrupted during the final test decoding; the checkpoints are complete" \
    "SIGINT during the test: the decoding ends and says so"
  [[ -f final/checkpoint_2.safetensors && ! -e final/test.hyp ]] || fail "SIGINT during the test: checkpoint_2 and no test.hyp expected"
  ;;

*) fail "unknown check '$check'" ;;
esac
echo "ok: $check"
