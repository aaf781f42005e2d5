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
#            .tmp file, and an older output file stays as it was; `train` stops with exit 1 naming
#            the checkpoint and the reason, leaves no .tmp, and resumes once there is space to the
#            same parameters and checkpoint_best as a run that never lacked it.
#   corrupt  each damaged file of a run directory: a flipped checkpoint_best (--resume restores it
#            from its numbered file, translate uses that one and says why), an empty or a directory
#            as the latest checkpoint (--resume names the older one), a best whose numbered file is
#            pruned (--resume says so, the final test says which model it tests), a changed or
#            missing spm.model, a damaged spm.json, a metrics.jsonl cut mid-line (resumes).
#   lineage  a damaged latest checkpoint: --resume exits 1 naming the older one that verifies and
#            --resume-from; resuming from it moves the abandoned newer checkpoint aside (kept, not
#            deleted), pruning keeps the checkpoint resumed from, and a later plain --resume
#            continues the resumed line, not the abandoned checkpoint.
#   settings nothing given is ignored on resume: --lr applies as a logged override (also after a
#            divergence) and is saved; --d-model is refused; other data under --data is refused, the
#            same data elsewhere accepted, no --data reads the checkpoint's; a new run refuses an
#            earlier spm.model of another --vocab-size or train split, and says when it reuses one.
#   kill     kill -9 at random moments and right after a best checkpoint's numbered file appears,
#            then resume (or start again when nothing was saved): the last checkpoint and
#            checkpoint_best equal an uninterrupted run's, bit for bit. The state such a kill can
#            leave, a best one step behind the numbered file, is also built on purpose: translate
#            says so and uses the right checkpoint, --resume repairs it.
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
  # A policy name that is not in the library's list: the valid names (the default among them), no
  # library internals (a header, a source line, template arguments).
  for choice in --norm --optimizer --schedule; do
    option_error "$choice: mid not in \{.*\}" train $choice mid
    grep -Eq 'type_list|\.hpp|TypeList|TypeTag|lnformer::' opt.log && fail "translate train $choice mid: library internals in the message: $(cat opt.log)"
  done
  option_error "--norm: mid not in \{.*pre.*\}" train --norm mid
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
    exit 77  # ctest: skipped (SKIP_RETURN_CODE)
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
  # train: a 700 KiB disk holds two checkpoints of the tiny model (275 KiB each) but not a third
  # being written; more space, then --resume ends where an uninterrupted run does.
  train whole --max-steps 12 --checkpoint-every 2 --keep-last 2 > whole.log 2>&1
  expect_status 0 whole.log "the uninterrupted run"
  mkdir -p tfull && mount -t tmpfs -o size=700k tmpfs tfull || fail "cannot mount a second tmpfs"
  trap 'umount "$work/full" "$work/tfull" 2>/dev/null' EXIT
  train tfull/run --max-steps 12 --checkpoint-every 2 --keep-last 2 > tfull.log 2>&1
  expect_status 1 tfull.log "training onto a full disk"
  expect_in tfull.log "tfull/run/checkpoint_[0-9]+\.safetensors.*No space left on device" \
    "train on a full disk: the file and the reason"
  ! compgen -G "tfull/run/*.tmp" > /dev/null || { ls -la tfull/run; fail "train left a .tmp on the full disk"; }
  mount -o remount,size=8m tfull || fail "cannot grow the tmpfs"
  "$bin" --threads 2 train --data data --out tfull/run "${tiny[@]}" --max-steps 12 --checkpoint-every 2 \
    --keep-last 2 --resume > tfull2.log 2>&1
  expect_status 0 tfull2.log "--resume once there is space"
  same_tensors whole/checkpoint_12.safetensors tfull/run/checkpoint_12.safetensors
  same_tensors whole/checkpoint_best.safetensors tfull/run/checkpoint_best.safetensors
  ;;

corrupt)
  prepare data > prepare.log 2>&1 || { cat prepare.log; fail "prepare"; }
  flip() {  # flip <file>: a byte of the tensor data inverted
    local size byte
    size=$(stat -c %s "$1")
    byte=$(od -An -tu1 -j $((size - 5)) -N1 "$1" | tr -d ' ')
    printf "$(printf '\\%03o' $((255 - byte)))" | dd of="$1" bs=1 seek=$((size - 5)) conv=notrunc status=none
  }
  resume() { "$bin" --threads 2 train --data data --out "$1" "${tiny[@]}" --resume "${@:2}"; }
  train run --max-steps 4 --checkpoint-every 2 --keep-last 10 > run.log 2>&1
  expect_status 0 run.log "training"
  best=$(sed -n 's/.*| best [0-9.]* (step \([0-9]*\)).*/\1/p' run.log | tail -1)
  cp -r run base
  # A damaged checkpoint_best: translate uses the numbered best and says why; --resume restores it.
  # (best is a hard link to its numbered file: a copy is damaged, as a file copied back from a
  # backup or written where links are not supported could be.)
  cp --remove-destination "run/checkpoint_${best}.safetensors" run/checkpoint_best.safetensors
  flip run/checkpoint_best.safetensors
  echo "eins zwei" | "$bin" --threads 2 translate --out run --beam 1 > /dev/null 2> best_translate.log
  expect_status 0 best_translate.log "translate with a damaged checkpoint_best"
  expect_in best_translate.log "checkpoint_best\.safetensors cannot be used: .*using run/checkpoint_${best}\.safetensors" \
    "translate: the damaged best is named and the numbered best used"
  resume run --max-steps 6 --checkpoint-every 2 > best_resume.log 2>&1
  expect_status 0 best_resume.log "--resume with a damaged checkpoint_best"
  expect_in best_resume.log "^--resume: checkpoint_best\.safetensors cannot be used: .*restored from run/checkpoint_${best}\.safetensors" \
    "--resume: the damaged best is restored from its numbered file"
  [[ -f run/abandoned/checkpoint_best.safetensors ]] || fail "the damaged best is not kept in abandoned/"
  same_tensors base/checkpoint_best.safetensors run/checkpoint_best.safetensors
  # An empty file and a directory as the latest checkpoint: --resume names the older one.
  for kind in empty directory; do
    rm -rf k && cp -r base k
    if [[ $kind == empty ]]; then : > k/checkpoint_6.safetensors; else mkdir k/checkpoint_6.safetensors; fi
    resume k --max-steps 8 > "$kind.log" 2>&1
    expect_status 1 "$kind.log" "--resume with an $kind latest checkpoint"
    expect_in "$kind.log" "latest checkpoint k/checkpoint_6\.safetensors cannot be used: " "$kind latest checkpoint: named"
    expect_in "$kind.log" "older checkpoints: k/checkpoint_4\.safetensors \(step 4\), k/checkpoint_2\.safetensors \(step 2\)" \
      "--resume with an $kind latest checkpoint: the older ones named"
  done
  # A stale best whose numbered file is pruned: said on resume; the final test says what it tests.
  rm -rf p && mkdir p && cp base/spm.* base/metrics.jsonl base/checkpoint_4.safetensors p/
  cp base/checkpoint_4.safetensors p/checkpoint_best.safetensors
  with_test=()
  for a in "${tiny[@]}"; do [[ $a == --no-test ]] || with_test+=("$a"); done
  "$bin" --threads 2 train --data data --out p "${with_test[@]}" --resume --max-steps 5 --checkpoint-every 2 > pruned.log 2>&1
  if (( best != 4 )); then
    expect_status 0 pruned.log "--resume with a stale best whose numbered file is gone"
    expect_in pruned.log "records the best at step ${best} .*the checkpoint of step ${best} is no longer on disk" \
      "a best that cannot be restored is said"
    expect_in pruned.log "^the best checkpoint \(step ${best}\) is not on disk: the test uses the last model \(step 5\)" \
      "the final test says which model it tests"
    expect_in pruned.log "^test \(16 sentences, checkpoint of step 5," "the test is labelled with the model tested"
  fi
  # The vocabulary: changed, missing; a damaged spm.json on a new run.
  rm -rf v && cp -r base v && printf 'x' >> v/spm.model
  resume v --max-steps 6 > spm_changed.log 2>&1
  expect_status 1 spm_changed.log "--resume with a changed spm.model"
  expect_in spm_changed.log "'v/spm\.model' is not the vocabulary of the checkpoint being resumed" "a changed spm.model: named"
  echo "eins" | "$bin" --threads 2 translate --out v > /dev/null 2> spm_translate.log
  expect_status 1 spm_translate.log "translate with a changed spm.model"
  expect_in spm_translate.log "'v/spm\.model' is not the vocabulary" "translate: a changed spm.model is named"
  rm v/spm.model
  resume v --max-steps 6 > spm_missing.log 2>&1
  expect_status 1 spm_missing.log "--resume without spm.model"
  expect_in spm_missing.log "'v/spm\.model' is missing" "a missing spm.model: named"
  mkdir j && cp base/spm.model base/spm.vocab j/ && echo '{"train_sha' > j/spm.json
  train j --max-steps 1 > spm_json.log 2>&1
  expect_status 1 spm_json.log "a new run with a damaged spm.json"
  expect_in spm_json.log "'j/spm\.json' is not valid" "a damaged spm.json: named"
  # metrics.jsonl cut in the middle of a line (a kill while it was written): the run resumes.
  rm -rf m && cp -r base m && head -c -7 base/metrics.jsonl > m/metrics.jsonl
  resume m --max-steps 6 > metrics.log 2>&1
  expect_status 0 metrics.log "--resume with metrics.jsonl cut mid-line"
  ;;

lineage)
  prepare data > prepare.log 2>&1 || { cat prepare.log; fail "prepare"; }
  train run --max-steps 6 --checkpoint-every 2 --keep-last 2 > train.log 2>&1
  expect_status 0 train.log "training"
  size=$(stat -c %s run/checkpoint_6.safetensors)
  printf '\x01\x02' | dd of=run/checkpoint_6.safetensors bs=1 seek=$((size - 9)) conv=notrunc status=none
  resume() { "$bin" --threads 2 train --data data --out run --log-every 1 --valid-bleu-sentences 4 --time-budget 0 \
               --no-test "$@"; }
  resume --resume --max-steps 8 > bad.log 2>&1
  expect_status 1 bad.log "--resume with a damaged latest checkpoint"
  expect_in bad.log "latest checkpoint run/checkpoint_6\.safetensors cannot be used: .*checksum" "the damage is named"
  expect_in bad.log "older checkpoints: run/checkpoint_4\.safetensors \(step 4\); continue from one with \`translate train --out run --resume-from" \
    "the older checkpoint that verifies and --resume-from are named"
  resume --resume-from run/checkpoint_4.safetensors --max-steps 5 --checkpoint-every 1 --keep-last 1 > from4.log 2>&1
  expect_status 0 from4.log "--resume-from the older checkpoint"
  expect_in from4.log "checkpoint_6\.safetensors is newer than the checkpoint resumed: moved to run/abandoned/checkpoint_6\.safetensors" \
    "the abandoned checkpoint is moved aside and said"
  [[ -f run/checkpoint_4.safetensors ]] || fail "pruning (--keep-last 1) deleted the checkpoint the run resumed from"
  [[ -f run/checkpoint_5.safetensors && -f run/abandoned/checkpoint_6.safetensors ]] || { ls -R run; fail "checkpoints 5 and abandoned/6 expected"; }
  [[ ! -e run/checkpoint_6.safetensors ]] || fail "the abandoned checkpoint_6 is still where --resume looks"
  resume --resume --max-steps 7 --checkpoint-every 1 --keep-last 1 > plain.log 2>&1
  expect_status 0 plain.log "plain --resume after --resume-from"
  expect_in plain.log "^resumed from run/checkpoint_5\.safetensors: step 5" "plain --resume continues the resumed line"
  [[ -f run/checkpoint_7.safetensors && -f run/checkpoint_5.safetensors && ! -e run/checkpoint_4.safetensors ]] ||
    { ls run; fail "--keep-last 1 after resuming from 5: expected checkpoint_5 (resumed from) and _7 only"; }
  ;;

settings)
  prepare data > prepare.log 2>&1 || { cat prepare.log; fail "prepare"; }
  resume() { "$bin" --threads 2 train --out run --log-every 1 --valid-bleu-sentences 4 --time-budget 0 --no-test \
               --resume "$@"; }
  # --lr after a divergence: the override is said, applied, recorded, and saved in the checkpoint.
  # (Up first: --lr 1e30 from step 2 on overflows at step 4, before its checkpoint; checkpoint_2 is
  # the last good one, written before any update at 1e30.)
  train run --max-steps 2 --checkpoint-every 2 --clip-norm 0 > first.log 2>&1
  expect_status 0 first.log "the first 2 steps"
  resume --lr 1e30 --max-steps 6 --checkpoint-every 2 > diverge.log 2>&1
  expect_status 3 diverge.log "--resume --lr 1e30: a diverging run"
  expect_in diverge.log "^--resume: --lr 1e\+30 overrides the checkpoint's 0.001 from step 2 on" "the override up is said"
  expect_in diverge.log "diverged at step 4 \(learning rate 1e\+30\)" "the override applies: divergence at step 4"
  resume --lr 1e-4 --max-steps 3 > lr.log 2>&1
  expect_status 0 lr.log "--resume --lr 1e-4 after the divergence"
  expect_in lr.log "^--resume: --lr 0.0001 overrides the checkpoint's 0.001 from step 2 on" "the override is said"
  expect_in lr.log "schedule constant \(lr 0.0001," "the override applies"
  "$python" - run <<'PY' || fail "the override is not recorded"
import json, struct, sys
d = open(sys.argv[1] + "/checkpoint_3.safetensors", "rb").read()
meta = json.loads(d[8:8 + struct.unpack("<Q", d[:8])[0]])["__metadata__"]
assert abs(json.loads(meta["translate/config"])["lr"] - 1e-4) < 1e-10, meta["translate/config"]
ev = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl") if '"resume"' in l]
assert any("--lr 0.0001 overrides" in c for c in ev[-1]["changes"]), ev
PY
  # Options the checkpoint fixes are refused, not ignored; the same values are fine.
  resume --d-model 64 --max-steps 4 > dmodel.log 2>&1
  expect_status 1 dmodel.log "--resume --d-model 64"
  expect_in dmodel.log "these options differ from it: --d-model 64 \(the checkpoint's: 32\)" "--d-model on resume: refused, named"
  resume --d-model 32 --vocab-size 40 --max-steps 4 > same.log 2>&1
  expect_status 0 same.log "--resume with the checkpoint's own --d-model and --vocab-size"
  # --data: without it the checkpoint's is read (the default data/de-en does not exist here); the
  # same files elsewhere are fine; other files are refused.
  expect_in same.log "^--resume: data from data \(the checkpoint's" "no --data: the checkpoint's"
  cp -r data moved
  resume --data moved --max-steps 5 > moved.log 2>&1
  expect_status 0 moved.log "--resume --data <the same files elsewhere>"
  expect_in moved.log "'moved' holds the same files as 'data'" "the same data elsewhere: said"
  cp -r data other && sed -i 's/eins/zwei/' other/train.de
  resume --data other --max-steps 6 > other.log 2>&1
  expect_status 1 other.log "--resume --data <other files>"
  expect_in other.log "the corpus in 'other' is not the one the checkpoint was trained on \\('moved'" \
    "other data: refused, both named"
  # A new run in an --out with an earlier spm.model (an earlier start stopped before its first checkpoint).
  mkdir fresh && cp run/spm.model run/spm.vocab run/spm.json fresh/
  "$bin" --threads 2 train --data data --out fresh "${tiny[@]/40/48}" --max-steps 1 > vocab.log 2>&1
  expect_status 1 vocab.log "a new run with --vocab-size 48 and an spm.model of 40"
  expect_in vocab.log "fresh/spm\.model' \(from an earlier start in 'fresh'\) has 40 pieces but --vocab-size is 48" \
    "another --vocab-size: refused, both sizes named"
  "$bin" --threads 2 train --data other --out fresh "${tiny[@]}" --max-steps 1 > split.log 2>&1
  expect_status 1 split.log "a new run on another train split with an earlier spm.model"
  expect_in split.log "was trained on another train split \(data\)" "another train split: refused"
  train fresh --max-steps 1 > reuse.log 2>&1
  expect_status 0 reuse.log "a new run reusing the earlier spm.model"
  expect_in reuse.log "^SentencePiece: reusing fresh/spm\.model \(40 pieces, trained on this train split\)" "the reuse is said"
  ;;

kill)
  prepare data > prepare.log 2>&1 || { cat prepare.log; fail "prepare"; }
  # A learning rate at which the validation BLEU improves a few times in 24 steps, the last best
  # before the end: the checks cover best being replaced, and a final model that is not the best.
  run=(--vocab-size 40 --norm pre --layers 1 --d-model 32 --ffn 64 --heads 2 --dropout 0.1 --max-tokens 300
       --log-every 1 --valid-bleu-sentences 16 --time-budget 0 --no-test --lr 2e-2 --max-steps 24 --checkpoint-every 3)
  start() { "$bin" --threads 2 train --data data --out "$1" "${run[@]}" "${@:2}"; }
  start_bg() { exec "$bin" --threads 2 train --data data --out "$1" "${run[@]}" "${@:2}"; }  # $! is the program
  t0=$(date +%s%N)
  start whole --keep-last 100 > whole.log 2>&1
  expect_status 0 whole.log "the uninterrupted run"
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  mapfile -t bests < <(sed -n 's/^valid step \([0-9]*\):.*saved checkpoint_[0-9]*\.safetensors (best)$/\1/p' whole.log)
  (( ${#bests[@]} >= 3 )) || { cat whole.log; fail "expected at least 3 best checkpoints in 24 steps, got ${bests[*]}"; }
  [[ ${bests[-1]} != 24 ]] || fail "the last step is the best: the check would not cover a final model that is not"
  echo "uninterrupted: ${ms} ms; best checkpoints at steps ${bests[*]}"

  # Runs to the end: --resume while a checkpoint exists, else the same command again.
  finish() {
    local k
    for k in 1 2 3; do
      if compgen -G "$1/checkpoint_[0-9]*.safetensors" > /dev/null; then
        start "$1" --keep-last 2 --resume > "$1.resume$k.log" 2>&1
      else
        start "$1" --keep-last 2 > "$1.resume$k.log" 2>&1
      fi
      expect_status 0 "$1.resume$k.log" "$1: run to the end after the kill"
      [[ -f $1/checkpoint_24.safetensors ]] && return
    done
    fail "$1: no checkpoint_24 after three resumes"
  }
  same_as_whole() {
    same_tensors whole/checkpoint_24.safetensors "$1/checkpoint_24.safetensors"
    same_tensors whole/checkpoint_best.safetensors "$1/checkpoint_best.safetensors"
  }
  # kill -9 the moment the last best checkpoint's numbered file appears (before or while best is
  # published): no later best would overwrite a stale one.
  start_bg between --keep-last 2 > between.log 2>&1 &
  pid=$!
  for _ in $(seq 20000); do [[ -e between/checkpoint_${bests[-1]}.safetensors ]] && break; sleep 0.001; done
  kill -KILL $pid; wait $pid 2>/dev/null
  finish between
  same_as_whole between
  # kill -9 at random moments of the run.
  RANDOM=$$
  for k in 1 2 3 4; do
    start_bg "random$k" --keep-last 2 > "random$k.log" 2>&1 &
    pid=$!
    at=$(awk -v ms="$ms" -v r=$RANDOM 'BEGIN { printf "%.3f", (0.1 + 0.8 * r / 32768) * ms / 1000 }')
    sleep "$at"
    kill -KILL $pid; wait $pid 2>/dev/null
    echo "random$k: killed after ${at} s, leaving:" $(cd "random$k" 2>/dev/null && ls)
    finish "random$k"
    same_as_whole "random$k"
  done
  # What a kill between the two files leaves, on purpose: the numbered checkpoint of the newest
  # best, with checkpoint_best still the one before.
  mkdir stale && cp whole/spm.* whole/metrics.jsonl stale/
  cp "whole/checkpoint_${bests[-1]}.safetensors" stale/
  cp "whole/checkpoint_${bests[-2]}.safetensors" stale/checkpoint_best.safetensors
  "$bin" --threads 2 translate --out stale --beam 1 < raw/test.de > stale.hyp 2> stale_translate.log
  expect_status 0 stale_translate.log "translate with a stale checkpoint_best"
  expect_in stale_translate.log "checkpoint_best\.safetensors holds step ${bests[-2]} .* records the best at step ${bests[-1]}.*using stale/checkpoint_${bests[-1]}\.safetensors" \
    "translate: the stale best is said and not used"
  start stale --keep-last 2 --resume > stale.log 2>&1
  expect_status 0 stale.log "--resume with a stale checkpoint_best"
  expect_in stale.log "^--resume: checkpoint_best\.safetensors holds step ${bests[-2]} .*restored from stale/checkpoint_${bests[-1]}\.safetensors" \
    "--resume: the stale best is repaired and said"
  same_as_whole stale
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
