#!/usr/bin/env bash
# The depth study (issue 24): Post-LN, Pre-LN, AdminLN and the other policies trained on the default
# German-English corpus at two depths, to their plateau or a cap, with everything else shared.
#
#   bash scripts/study-depth.sh                 train every run not finished yet (resumes the others),
#                                               then write $OUT/summary.md, $OUT/runs.csv and the curves
#   bash scripts/study-depth.sh report          only the summary and curves, from what is in $OUT
#   RUNS="6:pre 6:post" bash scripts/study-depth.sh     chosen runs (depth:name), in this order
#   TOY=1 OUT=/tmp/depth DATA=... bash scripts/study-depth.sh   the smoke size (ctest study_depth_smoke)
#
# Runs (per depth; name: policy and schedule, all at the same peak learning rate):
#   post-warmup    PostLN, linear warm-up over $WARMUP updates, then constant
#   post           PostLN, constant from update 1
#   pre            PreLN, constant from update 1
#   admin-warmup   AdminLN (w profiled on the first batch), with the warm-up (as Liu et al. ran it)
#   admin          AdminLN, constant from update 1
#   <policy>       every other policy of the library's list (deepnorm, rezero, ...), constant
# Default order: the five core runs at 6 + 6, the same at 18 + 18, then the other policies at 6 + 6 and
# at 18 + 18. Shared: the corpus and its data order (seed), the SentencePiece vocabulary (trained once),
# model width, Adam (beta2 0.98), peak rate, effective batch (max tokens x update freq), dropout,
# label smoothing, clipping, validation every $EVERY updates (loss; BLEU on the first 200 validation
# sentences, greedy), early stopping after $PATIENCE validations without a better BLEU, a cap of
# $MAX_STEPS updates, training statistics every $STATS_EVERY updates, the last $KEEP checkpoints kept
# (for checkpoint averaging), the test split decoded with beam 5 from the best checkpoint.
#
# Resumable: a run with a `done` file is skipped; a run with checkpoints continues exactly where it
# stopped (`translate train --resume`); a run killed mid-way loses at most $EVERY updates. $JOBS runs
# go at once, each with $THREADS OpenMP threads at nice 19 (other work on the machine goes first).
# Each run's directory keeps train.log, metrics.jsonl (train/valid/stats/test events), its
# checkpoints and test.hyp; `report` adds the average of the last checkpoints (translate average,
# then evaluate with beam 5) and writes the tables.
set -euo pipefail
# OUT, DATA and TRANSLATE given relative are relative to the caller's directory; the defaults to the
# repository's root.
caller=$PWD
absolute() { [[ $1 == /* ]] && echo "$1" || echo "$caller/$1"; }
[[ -n ${OUT:-} ]] && OUT=$(absolute "$OUT")
[[ -n ${DATA:-} ]] && DATA=$(absolute "$DATA")
[[ -n ${TRANSLATE:-} && $TRANSLATE == */* ]] && TRANSLATE=$(absolute "$TRANSLATE")
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode=${1:-all}
case $mode in all | report) ;; *) echo "study-depth: unknown mode '$mode' (all, report)" >&2; exit 1 ;; esac

if [[ ${TOY:-0} == 1 ]]; then
  : "${D_MODEL:=32}" "${FFN:=64}" "${HEADS:=2}" "${MAX_TOKENS:=300}" "${UPDATE_FREQ:=2}" "${MAX_STEPS:=24}"
  : "${EVERY:=8}" "${PATIENCE:=0}" "${WARMUP:=4}" "${STATS_EVERY:=4}" "${KEEP:=2}" "${VOCAB:=40}" "${JOBS:=1}"
  : "${RUNS:=1:post-warmup 1:pre}" "${VALID_SENTENCES:=4}"
fi
out=${OUT:-runs/depth}
data=${DATA:-data/de-en}
d_model=${D_MODEL:-128} ffn=${FFN:-512} heads=${HEADS:-4}
lr=${LR:-1e-3} warmup=${WARMUP:-400}
max_tokens=${MAX_TOKENS:-1024} update_freq=${UPDATE_FREQ:-2}
max_steps=${MAX_STEPS:-2000} every=${EVERY:-200} patience=${PATIENCE:-4} stats_every=${STATS_EVERY:-100}
keep=${KEEP:-4} vocab=${VOCAB:-8000} valid_sentences=${VALID_SENTENCES:-200}
jobs=${JOBS:-2} threads=${THREADS:-1}

if [[ -n ${TRANSLATE:-} ]]; then
  translate=$TRANSLATE
else
  source scripts/setup-translate.sh  # builds build-example/examples/translate, prepares data/de-en
fi
mkdir -p "$out"

# Every policy the trainer knows (its --help lists them), beyond the core three.
policies=$("$translate" train --help | sed -n 's/.*normalization policy: //p' | tr -d ',')
read -r -a all_policies <<< "$policies"
extra=()
for p in "${all_policies[@]}"; do [[ $p == post || $p == pre || $p == admin ]] || extra+=("$p"); done
if [[ -z ${RUNS:-} ]]; then
  RUNS=""
  for L in 6 18; do for n in post-warmup post pre admin-warmup admin; do RUNS+=" $L:$n"; done; done
  for L in 6 18; do for n in "${extra[@]}"; do RUNS+=" $L:$n"; done; done
fi
read -r -a runs <<< "$RUNS"

flags_of() {  # the policy and schedule flags of a run name
  case $1 in
    post-warmup) echo "--norm post --schedule linear_warmup --warmup $warmup" ;;
    post) echo "--norm post --schedule constant" ;;
    pre) echo "--norm pre --schedule constant" ;;
    admin-warmup) echo "--norm admin --schedule linear_warmup --warmup $warmup" ;;
    admin) echo "--norm admin --schedule constant" ;;
    *)
      [[ " ${all_policies[*]} " == *" $1 "* ]] || { echo "study-depth: unknown run '$1' (policies: ${all_policies[*]})" >&2; return 1; }
      echo "--norm $1 --schedule constant" ;;
  esac
}
for r in "${runs[@]}"; do flags_of "${r#*:}" > /dev/null; done

# One vocabulary for every run (trained once, copied into each run before it starts).
if [[ ! -f $out/spm.model ]]; then
  echo "study-depth: training the shared SentencePiece vocabulary ($vocab pieces)"
  rm -rf "$out/.vocab"
  "$translate" train --data "$data" --out "$out/.vocab" --vocab-size "$vocab" --max-steps 1 --no-test \
    --time-budget 0 > "$out/vocab.log" 2>&1 || true
  [[ -f $out/.vocab/spm.model ]] || { tail "$out/vocab.log" >&2; echo "study-depth: vocabulary training failed" >&2; exit 1; }
  cp "$out/.vocab/spm.model" "$out/.vocab/spm.vocab" "$out/"
  rm -rf "$out/.vocab"
fi

run_one() {  # run_one depth:name
  local L=${1%%:*} name=${1#*:} dir status=0 resume=()
  dir=$out/L$L-$name
  [[ -f $dir/done ]] && return 0
  mkdir -p "$dir"
  cp -n "$out/spm.model" "$out/spm.vocab" "$dir/" 2>/dev/null || true
  compgen -G "$dir/checkpoint_[0-9]*.safetensors" > /dev/null && resume=(--resume)
  echo "study-depth: L$L-$name $(flags_of "$name") ${resume[*]} -> $dir/train.log"
  # shellcheck disable=SC2046  # the flags are words
  nice -n 19 "$translate" --threads "$threads" train --data "$data" --out "$dir" --layers "$L" \
    --d-model "$d_model" --ffn "$ffn" --heads "$heads" $(flags_of "$name") --lr "$lr" --beta2 0.98 \
    --max-tokens "$max_tokens" --update-freq "$update_freq" --max-steps "$max_steps" --patience "$patience" \
    --checkpoint-every "$every" --log-every 50 --stats-every "$stats_every" --keep-last "$keep" \
    --valid-bleu-sentences "$valid_sentences" --time-budget 0 --beam 5 --vocab-size "$vocab" "${resume[@]}" \
    >> "$dir/train.log" 2>&1 || status=$?
  case $status in
    0) echo "finished $(date -u +%FT%TZ)" > "$dir/done" ;;
    3) echo "diverged $(date -u +%FT%TZ)" > "$dir/done" ;;
    *) echo "study-depth: L$L-$name stopped with status $status (rerun to resume; see $dir/train.log)" >&2 ;;
  esac
  echo "study-depth: L$L-$name: $(cat "$dir/done" 2>/dev/null || echo "not finished (status $status)")"
}

if [[ $mode == all ]]; then
  echo "study-depth: ${#runs[@]} runs into $out, $jobs at a time, $threads thread(s) each; $(nproc) cores:" \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  for r in "${runs[@]}"; do
    while (($(jobs -rp | wc -l) >= jobs)); do wait -n || true; done
    run_one "$r" &
  done
  wait
fi

exec bash scripts/study-depth-report.sh "$out" "$translate" "${runs[@]}"
