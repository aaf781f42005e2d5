# Shared by test_translate.sh and test_faults.sh (sourced): the arguments, the work directory, the
# generated corpus (German number words to English, raw/{train,valid,test}.{de,en}), the tiny model's
# options and the checks' helpers.
#
#   source test_lib.sh <translate binary> <work dir> <check>

bin=${1:?translate binary}
work=${2:?work dir}
check=${3:?check}
python=${PYTHON:-/usr/bin/python3}

fail() { echo "FAIL: $*" >&2; exit 1; }
# A full-disk check killed by ctest's timeout leaves its tmpfs mounted inside $work.
for m in $(awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts 2>/dev/null); do umount "$m"; done
rm -rf "$work" && mkdir -p "$work" && cd "$work" || fail "cannot use $work"

# --- the corpus: n pairs of 1-6 number words, deterministic ---------------------------------------
make_split() {  # make_split <name> <pairs> <seed>
  awk -v n="$2" -v seed="$3" -v de="raw/$1.de" -v en="raw/$1.en" 'BEGIN {
    split("null eins zwei drei vier fünf sechs sieben acht neun", D, " ");
    split("zero one two three four five six seven eight nine", E, " ");
    srand(seed);
    for (i = 0; i < n; i++) {
      k = 1 + int(rand() * 6); s = ""; t = "";
      for (j = 0; j < k; j++) { w = 1 + int(rand() * 10); s = s (j ? " " : "") D[w]; t = t (j ? " " : "") E[w]; }
      print s > de; print t > en;
    }
  }'
}
mkdir -p raw
make_split train 160 1
make_split valid 16 2
make_split test 16 3

prepare() {
  "$bin" prepare --data "$1" --train-src raw/train.de --train-tgt raw/train.en --valid-src raw/valid.de \
    --valid-tgt raw/valid.en --test-src raw/test.de --test-tgt raw/test.en
}

# A tiny model: every step takes milliseconds; dropout on, so the RNG state matters for resume.
tiny=(--vocab-size 40 --norm pre --layers 1 --d-model 32 --ffn 64 --heads 2 --dropout 0.1 --max-tokens 300
      --log-every 1 --valid-bleu-sentences 4 --time-budget 0 --no-test)
train() {  # train <out> <args...>
  local out=$1; shift
  "$bin" --threads 2 train --data data --out "$out" "${tiny[@]}" "$@"
}

expect_status() {  # expect_status <want> <log> <what>
  local got=$?
  [[ $got == "$1" ]] || { cat "$2" >&2; fail "$3: exit status $got, expected $1"; }
}

expect_in() {  # expect_in <log> <pattern> <what>
  grep -Eq -- "$2" "$1" || { cat "$1" >&2; fail "$3: the output does not match /$2/"; }
}

same_tensors() {  # same_tensors <a> <b>: every tensor bit-identical (the metadata may differ)
  "$python" - "$1" "$2" <<'EOF' || fail "tensors of $1 and $2 differ"
import json, struct, sys

def tensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    return {k: (v["dtype"], v["shape"], body[v["data_offsets"][0]:v["data_offsets"][1]])
            for k, v in header.items() if k != "__metadata__"}

a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
if sorted(a) != sorted(b):
    sys.exit(f"different tensor names: {sorted(set(a) ^ set(b))[:5]}")
diff = [k for k in a if a[k] != b[k]]
print(f"{len(a)} tensors compared (parameters and optimizer state), {len(diff)} differ")
if diff:
    sys.exit("differ: " + ", ".join(diff[:10]))
moved = [k for k in a if k.startswith("optim")]
if not moved:
    sys.exit("no optimizer state in the checkpoint: the check would not cover it")
EOF
}
