#!/usr/bin/env bash
# End-to-end checks of the translate program (ctest: translate_*), on a small generated corpus
# (German number words to English) so that they run offline in seconds.
#
#   test_translate.sh <translate binary> <work dir> <check>
#
# checks:
#   resume      train N steps; train N/2, stop, resume, train N/2: every tensor of the two step-N
#               checkpoints (parameters and optimizer state) is bit-identical. The run crosses an
#               epoch boundary and the stop falls inside an epoch.
#   accumulate  --update-freq 2 consumes two batches per update and resumes bit-exactly mid-epoch;
#               --patience stops after validations without a better BLEU; --stats-every logs per-layer
#               statistics.
#   corrupt     a checkpoint truncated at several points and with a flipped byte (tensor data,
#               metadata, header length) is refused with a clear error and exit status 1, never a crash.
#   diverge     a learning rate that overflows: exit status 3, a message with the step, learning rate
#               and last finite loss, and the last good checkpoint still loads.
#   data        the user-file reader's errors reach the command line: different line counts (both
#               files and counts named), invalid UTF-8 (file and line named), missing file.
#   translate   translate and evaluate run on a trained checkpoint (stdin -> stdout; BLEU signature);
#               score gives evaluate's numbers for its output and refuses mismatched files; average
#               writes the elementwise mean of two checkpoints, usable by translate and evaluate;
#               fold-admin writes an AdminLN run as a PostLN model that translates the same.
#   study       scripts/study-depth.sh at toy size: both runs finish, log statistics, are scored
#               (best and averaged checkpoints) and summarised; a second call trains nothing again.
#   norms       every normalization policy the program accepts (read from its own error for an unknown
#               --norm, so from the library's list) trains 2 steps, calibrating first where the policy
#               has that hook, and writes a checkpoint.
#   mpi         (needs LNF_MPIEXEC, the launcher with its options) data-parallel runs on 2 ranks: one
#               progress report (rank 0's); 4 steps + resume on 2 ranks is bit-identical to 8 steps on
#               2 ranks; a 2-rank checkpoint resumes on 1 rank and a 1-rank one on 2; a corrupted
#               checkpoint ends both ranks with status 1 and the checksum message.
#   mpi_kill    rank 1 of a 2-rank run is killed (SIGKILL) mid-training: the job exits non-zero within
#               60 s instead of hanging.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/test_lib.sh" "$@"

case $check in
resume)
  prepare data > prepare.log 2>&1 || { cat prepare.log; fail "prepare"; }
  train whole --max-steps 10 --checkpoint-every 5 > whole.log 2>&1
  expect_status 0 whole.log "uninterrupted run"
  batches=$(sed -n 's/^train: [0-9]* pairs in \([0-9]*\) batches.*/\1/p' whole.log)
  [[ -n $batches && $batches -gt 2 && $batches -lt 10 ]] ||
    fail "the run should cross an epoch boundary with the stop inside an epoch (batches per epoch: '$batches')"
  (( 5 % batches != 0 )) || fail "step 5 is an epoch boundary ($batches batches per epoch): the test would not cover a mid-epoch stop"
  train parts --max-steps 5 --checkpoint-every 5 > part1.log 2>&1
  expect_status 0 part1.log "first half"
  # --resume takes the model/optimizer/data configuration from the checkpoint; only the stop moves.
  "$bin" --threads 2 train --data data --out parts --resume --max-steps 10 --checkpoint-every 5 --log-every 1 \
    --valid-bleu-sentences 4 --time-budget 0 --no-test > part2.log 2>&1
  expect_status 0 part2.log "resumed run"
  expect_in part2.log "^resumed from .*checkpoint_0*5\.safetensors: step 5" "resume message"
  same_tensors whole/checkpoint_10.safetensors parts/checkpoint_10.safetensors
  # Interrupted by a signal at whatever step it arrives (SIGTERM: a background job of a script ignores
  # SIGINT), then resumed to the same end.
  train whole60 --max-steps 60 --checkpoint-every 1000 > whole60.log 2>&1
  expect_status 0 whole60.log "uninterrupted 60-step run"
  "$bin" --threads 2 train --data data --out intr "${tiny[@]}" --max-steps 60 --checkpoint-every 1000 \
    > intr.log 2>&1 &  # not through train(): $! must be the program itself
  pid=$!
  for _ in $(seq 600); do grep -Eq '^step +3 ' intr.log && break; sleep 0.05; done
  kill -TERM $pid
  wait $pid
  expect_status 130 intr.log "SIGTERM during training"
  expect_in intr.log "^interrupted: continue with .*--resume" "interrupt message"
  "$bin" --threads 2 train --data data --out intr --resume --max-steps 60 --checkpoint-every 1000 --log-every 1 \
    --valid-bleu-sentences 4 --time-budget 0 --no-test > intr2.log 2>&1
  expect_status 0 intr2.log "run resumed after SIGINT"
  same_tensors whole60/checkpoint_60.safetensors intr/checkpoint_60.safetensors
  ;;

accumulate)
  prepare data > prepare.log 2>&1 || { cat prepare.log; fail "prepare"; }
  # --update-freq 2: each update consumes two batches (an epoch of B batches takes ceil(B / 2) updates),
  # and a run stopped and resumed mid-epoch ends bit-identical to an uninterrupted one.
  train whole --update-freq 2 --max-steps 5 --checkpoint-every 5 > whole.log 2>&1
  expect_status 0 whole.log "uninterrupted run with --update-freq 2"
  expect_in whole.log "^gradient accumulation: each update from 2 batches" "accumulation message"
  batches=$(sed -n 's/^train: [0-9]* pairs in \([0-9]*\) batches.*/\1/p' whole.log)
  per_epoch=$(( (batches + 1) / 2 ))
  (( 2 % per_epoch != 0 && 5 > per_epoch )) || fail "the run should cross an epoch and stop inside one ($batches batches)"
  expect_in whole.log "^step +$per_epoch \| epoch +1 100%" "an epoch of $batches batches in $per_epoch updates"
  train parts --update-freq 2 --max-steps 2 --checkpoint-every 2 > part1.log 2>&1
  expect_status 0 part1.log "first part"
  "$bin" --threads 2 train --data data --out parts --resume --max-steps 5 --checkpoint-every 5 --log-every 1 \
    --valid-bleu-sentences 4 --time-budget 0 --no-test > part2.log 2>&1
  expect_status 0 part2.log "resumed run"
  same_tensors whole/checkpoint_5.safetensors parts/checkpoint_5.safetensors
  # --patience 1 at a learning rate too small to change the validation BLEU: it stops after the first
  # validation that is not better than the best, and says why.
  train patient --lr 1e-9 --patience 1 --max-steps 50 --checkpoint-every 2 > patient.log 2>&1
  expect_status 0 patient.log "run with --patience 1"
  expect_in patient.log "^stopped: patience: no better validation BLEU than [0-9.]+ \(step 2\) in 1 validations; 4 steps" \
    "early stop after one validation without improvement"
  # --stats-every: per-layer gradient norms and output variances in metrics.jsonl.
  train stats --max-steps 4 --checkpoint-every 4 --stats-every 2 > stats.log 2>&1
  expect_status 0 stats.log "run with --stats-every 2"
  "$python" - stats/metrics.jsonl <<'EOF' || fail "stats events"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if '"stats"' in l]
assert [e["step"] for e in ev] == [2, 4], ev
for e in ev:
    for k in ("grad_norm", "hidden_var"):
        assert len(e[k]["encoder"]) == 1 and len(e[k]["decoder"]) == 1, e
        assert all(v > 0 for v in e[k]["encoder"] + e[k]["decoder"]), e
print("stats events:", len(ev))
EOF
  ;;

corrupt)
  prepare data > prepare.log 2>&1 || { cat prepare.log; fail "prepare"; }
  train run --max-steps 2 --checkpoint-every 2 > train.log 2>&1
  expect_status 0 train.log "training"
  good=$(ls run/checkpoint_*2.safetensors)
  size=$(stat -c %s "$good")
  hlen=$("$python" -c "import struct,sys; print(struct.unpack('<Q', open(sys.argv[1],'rb').read(8))[0])" "$good")
  evaluate() { "$bin" --threads 2 evaluate --data data --checkpoint "$1" --spm run/spm.model --split valid; }
  evaluate "$good" > good.log 2>&1
  expect_status 0 good.log "evaluate on the intact checkpoint"
  expect_in good.log "BLEU\|nrefs:1\|case:mixed\|eff:no\|tok:13a\|smooth:exp\|version:2\.3\.1" "BLEU signature"
  for cut in 0 4 8 $((hlen / 2)) $((8 + hlen)) $((8 + hlen + 100)) $((size / 2)) $((size - 1)); do
    head -c "$cut" "$good" > cut.safetensors
    evaluate cut.safetensors > cut_$cut.log 2>&1
    expect_status 1 cut_$cut.log "checkpoint truncated at byte $cut of $size"
    expect_in cut_$cut.log "cut\.safetensors" "truncated at $cut: the message names the file"
  done
  flip() {  # flip <offset>: one byte of the checkpoint inverted
    cp "$good" flip.safetensors
    local byte
    byte=$(od -An -tu1 -j "$1" -N1 "$good" | tr -d ' ')
    printf "$(printf '\\%03o' $((255 - byte)))" | dd of=flip.safetensors bs=1 seek="$1" conv=notrunc status=none
  }
  for at in 3 $((8 + hlen / 2)) $((8 + hlen + 10)) $((size - 3)); do
    flip "$at"
    cmp -s "$good" flip.safetensors && fail "flipping byte $at changed nothing"
    evaluate flip.safetensors > flip_$at.log 2>&1
    expect_status 1 flip_$at.log "checkpoint with byte $at flipped"
    expect_in flip_$at.log "flip\.safetensors" "byte $at flipped: the message names the file"
  done
  # The tensor-data flips must be caught by the checksum (the header still parses).
  expect_in flip_$((size - 3)).log "checksum" "flipped tensor byte: a checksum error"
  # --resume from a corrupted latest checkpoint is refused the same way.
  cp flip.safetensors "$good"
  "$bin" --threads 2 train --data data --out run --resume --max-steps 4 --no-test > resume_bad.log 2>&1
  expect_status 1 resume_bad.log "--resume from a corrupted checkpoint"
  expect_in resume_bad.log "checksum" "--resume from a corrupted checkpoint: a checksum error"
  ;;

diverge)
  prepare data > prepare.log 2>&1 || { cat prepare.log; fail "prepare"; }
  # Step 1 is finite (initial parameters) and checkpointed; Adam's first update moves every weight
  # by about lr = 1e30, so step 2's activations overflow.
  train run --max-steps 6 --checkpoint-every 1 --lr 1e30 --clip-norm 0 > train.log 2>&1
  expect_status 3 train.log "diverging run"
  expect_in train.log "diverged at step [0-9]+ \(learning rate 1e\+30\); last finite loss [0-9.]+" "divergence message"
  expect_in train.log "last good checkpoint is .*checkpoint_[0-9]+\.safetensors" "divergence names the last good checkpoint"
  last=$(sed -n 's/.*last good checkpoint is \(.*\.safetensors\).*/\1/p' train.log | tail -1)
  [[ -f $last ]] || fail "the last good checkpoint '$last' does not exist"
  grep -q '"event":"diverged"' run/metrics.jsonl || fail "metrics.jsonl has no diverged event"
  "$bin" --threads 2 evaluate --data data --checkpoint "$last" --split valid > eval.log 2>&1
  expect_status 0 eval.log "evaluate on the last good checkpoint"
  ;;

data)
  head -n 5 raw/train.en > short.en
  "$bin" prepare --data d1 --train-src raw/train.de --train-tgt short.en --valid-src raw/valid.de \
    --valid-tgt raw/valid.en --test-src raw/test.de --test-tgt raw/test.en > counts.log 2>&1
  expect_status 1 counts.log "different line counts"
  expect_in counts.log "train\.de.*160.*short\.en.*5|short\.en.*5.*train\.de.*160" "line counts: both files and counts"
  cp raw/train.de bad.de && printf 'gut\nschlecht \xff\xfe\n' >> bad.de && printf 'good\nbad\n' > tail.en &&
    cat raw/train.en tail.en > bad.en
  "$bin" prepare --data d2 --train-src bad.de --train-tgt bad.en --valid-src raw/valid.de \
    --valid-tgt raw/valid.en --test-src raw/test.de --test-tgt raw/test.en > utf8.log 2>&1
  expect_status 1 utf8.log "invalid UTF-8"
  expect_in utf8.log "bad\.de.*162|162.*bad\.de" "invalid UTF-8: file and line"
  "$bin" prepare --data d3 --train-src missing.de --train-tgt raw/train.en --valid-src raw/valid.de \
    --valid-tgt raw/valid.en --test-src raw/test.de --test-tgt raw/test.en > missing.log 2>&1
  expect_status 1 missing.log "missing file"
  expect_in missing.log "missing\.de" "missing file: named"
  ;;

norms)
  prepare data > prepare.log 2>&1 || { cat prepare.log; fail "prepare"; }
  "$bin" train --norm none > names.log 2>&1
  expect_status 1 names.log "train --norm none"
  names=$(sed -n 's/.*--norm: none not in {\(.*\)}.*/\1/p' names.log)
  [[ -n $names ]] || { cat names.log; fail "train --norm none: no list of valid names"; }
  IFS=, read -ra norms <<< "$names"
  for norm in "${norms[@]}"; do
    "$bin" --threads 2 train --data data --out "run-$norm" --norm "$norm" --vocab-size 40 --layers 1 --d-model 32 \
      --ffn 64 --heads 2 --dropout 0.1 --max-tokens 300 --log-every 1 --valid-bleu-sentences 4 --time-budget 0 \
      --no-test --max-steps 2 --checkpoint-every 2 > "$norm.log" 2>&1
    expect_status 0 "$norm.log" "train --norm $norm"
    expect_in "$norm.log" "model: Seq2Seq<$norm>" "train --norm $norm: the model"
    [[ -f "run-$norm/checkpoint_2.safetensors" ]] || fail "train --norm $norm: no checkpoint"
  done
  echo "trained: ${norms[*]}"
  ;;

translate)
  prepare data > prepare.log 2>&1 || { cat prepare.log; fail "prepare"; }
  train run --max-steps 4 --checkpoint-every 2 > train.log 2>&1
  expect_status 0 train.log "training"
  printf 'eins zwei\ndrei\n' | "$bin" --threads 2 translate --out run > out.txt 2> translate.log
  expect_status 0 translate.log "translate"
  [[ $(wc -l < out.txt) == 2 ]] || { cat out.txt translate.log; fail "translate: 2 lines in, $(wc -l < out.txt) out"; }
  "$bin" --threads 2 evaluate --data data --out run --beam 3 > eval.log 2>&1
  expect_status 0 eval.log "evaluate"
  expect_in eval.log "BLEU.*= *[0-9.]+" "evaluate prints BLEU"
  expect_in eval.log "chrF" "evaluate prints chrF"
  # score: the BLEU and chrF of evaluate's own translations, the same numbers and signatures.
  "$bin" evaluate --data data --out run --beam 3 --output eval.hyp > eval2.log 2>&1
  expect_status 0 eval2.log "evaluate --output"
  "$bin" score --hyp eval.hyp --ref data/test.en > score.log 2>&1
  expect_status 0 score.log "score"
  [[ $(grep -E '^(BLEU|chrF)' eval2.log) == "$(cat score.log)" ]] || { cat eval2.log score.log; fail "score differs from evaluate"; }
  head -n 3 eval.hyp > short.hyp
  "$bin" score --hyp short.hyp --ref data/test.en > score_bad.log 2>&1
  expect_status 1 score_bad.log "score with fewer hypothesis lines"
  expect_in score_bad.log "short.hyp' has 3 lines but --ref 'data/test.en' has [0-9]+" "line count message"
  "$bin" score --hyp data --ref data/test.en > score_dir.log 2>&1
  expect_status 1 score_dir.log "score with a directory"
  expect_in score_dir.log "is a directory" "directory message"
  # average: the mean of checkpoints 2 and 4, elementwise, loadable by translate and evaluate.
  "$bin" average --out run --last 2 --output run/avg.safetensors > avg.log 2>&1
  expect_status 0 avg.log "average --last 2"
  expect_in avg.log "averaged the parameters of 2 checkpoint\(s\) \(steps 2, 4\)" "average message"
  "$python" - run/checkpoint_2.safetensors run/checkpoint_4.safetensors run/avg.safetensors <<'EOF' || fail "average values"
import json, struct, sys, array

def tensors(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for k, v in header.items():
        if k == "__metadata__" or v["dtype"] != "F32":
            continue
        a = array.array("f"); a.frombytes(body[v["data_offsets"][0]:v["data_offsets"][1]]); out[k] = a
    return out

a, b, m = (tensors(p) for p in sys.argv[1:])
assert not any(k.startswith("optim/") for k in m), "the average holds parameters only"
params = [k for k in a if not k.startswith("optim/")]
assert sorted(params) == sorted(m), (sorted(set(params) ^ set(m)))[:5]
worst = max(abs((x + y) / 2 - z) for k in params for x, y, z in zip(a[k], b[k], m[k]))
moved = max(abs(x - y) for k in params for x, y in zip(a[k], b[k]))
assert moved > 1e-4, "checkpoints 2 and 4 are the same: the check would not see anything"
assert worst < 1e-6, worst
print(f"{len(params)} tensors: mean of the two within {worst:.1e}")
EOF
  printf 'eins zwei\n' | "$bin" translate --checkpoint run/avg.safetensors > avg_out.txt 2> avg_translate.log
  expect_status 0 avg_translate.log "translate with the averaged checkpoint"
  "$bin" evaluate --data data --checkpoint run/avg.safetensors --beam 2 > avg_eval.log 2>&1
  expect_status 0 avg_eval.log "evaluate the averaged checkpoint"
  "$bin" average --inputs run/checkpoint_4.safetensors data/train.de --output bad.safetensors > avg_bad.log 2>&1
  expect_status 1 avg_bad.log "average of a non-checkpoint"
  # fold-admin: an AdminLN run written as PostLN translates the test split to the same words.
  admin_tiny=("${tiny[@]}")
  for i in "${!admin_tiny[@]}"; do [[ ${admin_tiny[i]} == --norm ]] && admin_tiny[i + 1]=admin; done
  "$bin" --threads 2 train --data data --out admin "${admin_tiny[@]}" --max-steps 4 --checkpoint-every 4 > admin.log 2>&1
  expect_status 0 admin.log "training AdminLN"
  "$bin" fold-admin --checkpoint admin/checkpoint_best.safetensors --output admin/folded.safetensors > fold.log 2>&1
  expect_status 0 fold.log "fold-admin"
  expect_in fold.log "w decoder sublayer  1: mean [0-9.]+" "fold-admin prints w"
  expect_in fold.log "into a PostLN model" "fold-admin message"
  expect_in fold.log "largest logit difference [0-9.]+e-(0[5-9]|[1-9][0-9])" "folded logits equal to 1e-5"
  "$bin" evaluate --data data --checkpoint admin/checkpoint_best.safetensors --beam 2 --output admin.hyp > admin_eval.log 2>&1
  expect_status 0 admin_eval.log "evaluate AdminLN"
  "$bin" evaluate --data data --checkpoint admin/folded.safetensors --beam 2 --output folded.hyp > folded_eval.log 2>&1
  expect_status 0 folded_eval.log "evaluate the folded PostLN model"
  expect_in folded_eval.log "post" "the folded checkpoint is a PostLN model"
  cmp -s admin.hyp folded.hyp || { diff admin.hyp folded.hyp | head; fail "the folded model translates differently"; }
  "$bin" fold-admin --checkpoint run/checkpoint_4.safetensors --output bad.safetensors > fold_bad.log 2>&1
  expect_status 1 fold_bad.log "fold-admin of a non-Admin checkpoint"
  expect_in fold_bad.log "fold-admin folds AdminLN checkpoints" "fold-admin refusal"
  ;;

study)
  # scripts/study-depth.sh at toy size (two runs of tens of updates, resumable, then the report), so
  # that the depth study's script cannot rot.
  prepare data > prepare.log 2>&1 || { cat prepare.log; fail "prepare"; }
  study=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/study-depth.sh
  TOY=1 OUT=study DATA=data TRANSLATE="$bin" bash "$study" > study.log 2>&1
  expect_status 0 study.log "study-depth.sh at toy size"
  for run in L1-post-warmup L1-pre; do
    [[ -f study/$run/done ]] || { cat study.log; fail "$run did not finish"; }
    grep -q '"event":"stats"' "study/$run/metrics.jsonl" || fail "$run logged no training statistics"
    grep -q '"event":"test"' "study/$run/metrics.jsonl" || fail "$run has no test score"
    [[ -f study/$run/avg_eval.log ]] || fail "$run: the average of its last checkpoints was not evaluated"
  done
  cmp -s study/spm.model study/L1-pre/spm.model || fail "the runs do not share the study's vocabulary"
  expect_in study/summary.md "^\| post-warmup \| finished \| 24 \|" "summary row of post-warmup"
  expect_in study/summary.md "^\| pre \| finished \| 24 \|" "summary row of pre"
  [[ $(wc -l < study/runs.csv) == 3 ]] || fail "runs.csv: expected a header and 2 rows"
  # A second call has nothing left to train and only writes the report again.
  TOY=1 OUT=study DATA=data TRANSLATE="$bin" bash "$study" > study2.log 2>&1
  expect_status 0 study2.log "study-depth.sh again"
  ! grep -q "^study-depth: L1-" study2.log || { cat study2.log; fail "finished runs were trained again"; }
  ;;

mpi)
  [[ -n ${LNF_MPIEXEC:-} ]] || fail "LNF_MPIEXEC (the MPI launcher command) is not set"
  read -r -a mpiexec <<< "$LNF_MPIEXEC"
  prepare data > prepare.log 2>&1 || { cat prepare.log; fail "prepare"; }
  train2() {  # train2 <out> <args...>: the tiny run on 2 ranks, one thread each
    local out=$1; shift
    "${mpiexec[@]}" "$bin" --threads 1 train --data data --out "$out" "${tiny[@]}" "$@"
  }
  resume() {  # resume <launcher...> -- <out> <max steps>
    local launcher=()
    while [[ $1 != -- ]]; do launcher+=("$1"); shift; done
    shift
    "${launcher[@]}" "$bin" --threads 1 train --data data --out "$1" --resume --max-steps "$2" \
      --checkpoint-every 4 --log-every 1 --valid-bleu-sentences 4 --time-budget 0 --no-test
  }
  train2 whole --max-steps 8 --checkpoint-every 4 > whole.log 2>&1
  expect_status 0 whole.log "2-rank run"
  expect_in whole.log "data-parallel over 2 ranks" "the run says it is data-parallel"
  [[ $(grep -Ec '^step +1 \|' whole.log) == 1 ]] || { cat whole.log; fail "expected one progress report (rank 0's)"; }
  expect_in whole.log "^communication: " "communication time reported"
  train2 parts --max-steps 4 --checkpoint-every 4 > part1.log 2>&1
  expect_status 0 part1.log "2-rank first half"
  resume "${mpiexec[@]}" -- parts 8 > part2.log 2>&1
  expect_status 0 part2.log "2-rank resume"
  same_tensors whole/checkpoint_8.safetensors parts/checkpoint_8.safetensors
  # Another number of ranks: 2 -> 1 and 1 -> 2 continue (different global batches, so not the same tensors).
  cp -r whole/. on1 && rm on1/checkpoint_8.safetensors
  resume -- on1 8 > on1.log 2>&1
  expect_status 0 on1.log "resume a 2-rank checkpoint on 1 rank"
  expect_in on1.log "^resumed from .*checkpoint_0*4\.safetensors: step 4" "2 -> 1 resumes at step 4"
  expect_in on1.log "written by a run on 2 rank\(s\); this one has 1" "2 -> 1 says the rank count changed"
  [[ -f on1/checkpoint_8.safetensors ]] || fail "2 -> 1: no checkpoint at step 8"
  train single --max-steps 4 --checkpoint-every 4 > single.log 2>&1
  expect_status 0 single.log "1-rank run"
  resume "${mpiexec[@]}" -- single 8 > on2.log 2>&1
  expect_status 0 on2.log "resume a 1-rank checkpoint on 2 ranks"
  expect_in on2.log "written by a run on 1 rank\(s\); this one has 2" "1 -> 2 says the rank count changed"
  [[ -f single/checkpoint_8.safetensors ]] || fail "1 -> 2: no checkpoint at step 8"
  # A bad checkpoint: rank 0 finds it, and the job ends on every rank (no hang) with status 1.
  ckpt=$(ls parts/checkpoint_*8.safetensors)
  size=$(stat -c %s "$ckpt")
  printf '\x00\x01' | dd of="$ckpt" bs=1 seek=$((size - 3)) conv=notrunc status=none
  timeout 120 "${mpiexec[@]}" "$bin" --threads 1 train --data data --out parts --resume --max-steps 12 \
    --no-test > bad.log 2>&1
  status=$?
  [[ $status != 124 ]] || { cat bad.log; fail "a corrupted checkpoint on 2 ranks hung"; }
  [[ $status != 0 ]] || { cat bad.log; fail "a corrupted checkpoint on 2 ranks: exit status 0"; }
  expect_in bad.log "rank 0 of 2: .*checksum" "corrupted checkpoint on 2 ranks: rank 0 names the checksum"
  ;;

mpi_kill)
  [[ -n ${LNF_MPIEXEC:-} ]] || fail "LNF_MPIEXEC (the MPI launcher command) is not set"
  read -r -a mpiexec <<< "$LNF_MPIEXEC"
  prepare data > prepare.log 2>&1 || { cat prepare.log; fail "prepare"; }
  "${mpiexec[@]}" "$bin" --threads 1 train --data data --out run "${tiny[@]}" --max-steps 1000000 \
    --checkpoint-every 1000000 > run.log 2>&1 &
  launcher=$!
  for _ in $(seq 1200); do grep -Eq '^step +3 ' run.log && break; sleep 0.05; done
  grep -Eq '^step +3 ' run.log || { cat run.log; kill -KILL $launcher; fail "the 2-rank run did not reach step 3"; }
  victim=""
  for pid in $(pgrep -f -- "$bin --threads 1 train --data data --out run"); do
    if tr '\0' '\n' < /proc/$pid/environ 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then victim=$pid; fi
  done
  [[ -n $victim ]] || { kill -KILL $launcher; fail "cannot find rank 1's process"; }
  t0=$(date +%s)
  kill -KILL "$victim"
  for _ in $(seq 600); do kill -0 $launcher 2>/dev/null || break; sleep 0.1; done
  if kill -0 $launcher 2>/dev/null; then
    pkill -KILL -f -- "$bin --threads 1 train --data data --out run"; kill -KILL $launcher
    cat run.log; fail "the job still runs 60 s after rank 1 was killed"
  fi
  wait $launcher
  status=$?
  echo "rank 1 killed: the job ended with status $status after $(( $(date +%s) - t0 )) s"
  [[ $status != 0 ]] || { cat run.log; fail "the job exited 0 although rank 1 was killed"; }
  pgrep -f -- "$bin --threads 1 train --data data --out run" > /dev/null && fail "a rank outlived the job"
  ;;

*) fail "unknown check '$check'" ;;
esac
echo "ok: $check"
