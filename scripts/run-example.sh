#!/usr/bin/env bash
# The main job, from a fresh clone: install what is missing, build the translation trainer, prepare the
# default German-English corpus, train a small PreLN Transformer without warm-up within a time budget,
# then print the test BLEU (sacreBLEU-compatible, with its signature), chrF and example translations.
#
#   bash scripts/run-example.sh                         defaults: 14 minutes of training and testing
#   bash scripts/run-example.sh --norm post --warmup 400
#   bash scripts/run-example.sh --time-budget 0 --max-epochs 20
#   bash scripts/run-example.sh --help                  every training option
#
# Arguments go to `translate train`. The run directory is runs/de-en; an earlier one there is moved
# aside to runs/de-en.<time> (unless --resume is given, which continues it). Afterwards:
#   echo "Datei nicht gefunden" | build-example/examples/translate translate --out runs/de-en
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup-translate.sh

resume=0
for a in "$@"; do [[ $a == --resume ]] && resume=1; done
if [[ $resume == 0 && -d runs/de-en ]]; then
  old=runs/de-en.$(date +%Y%m%d-%H%M%S)
  mv runs/de-en "$old"
  echo "run-example: the earlier run in runs/de-en was moved to $old"
fi
exec "$translate" train --data data/de-en --out runs/de-en "$@"
