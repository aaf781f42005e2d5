#!/usr/bin/env bash
# The tables and curves of the depth study (scripts/study-depth.sh calls this; rerun it any time):
#
#   bash scripts/study-depth-report.sh <study dir> <translate binary> <depth:name>...
#
# Per finished run (a `done` file), once: the average of its last checkpoints (translate average --last
# $KEEP) evaluated on the test split with beam 5 (avg_eval.log). Then, from every run's metrics.jsonl:
#   runs.csv        one row per run: depth, name, status, updates, best valid BLEU (update), first update
#                   with valid BLEU >= $BLEU_AT, test BLEU/chrF of the best checkpoint and of the
#                   average, divergence (update, learning rate, last finite loss), training seconds
#   valid.csv       every validation: depth, name, update, valid loss, valid BLEU
#   summary.md      a table per depth
#   valid_L<d>.png  validation loss and BLEU against updates, one line per run
#   stats_L<d>.png  per-layer gradient norm and output variance (decoder) at the first and last logged
#                   update of each core run
set -euo pipefail
dir=${1:?study dir}
translate=${2:?translate binary}
shift 2
runs=("$@")
keep=${KEEP:-4} data=${DATA:-data/de-en} bleu_at=${BLEU_AT:-10}

for r in "${runs[@]}"; do
  run=$dir/L${r%%:*}-${r#*:}
  [[ -f $run/done && ! -f $run/avg_eval.log ]] || continue
  grep -q '^finished' "$run/done" || continue  # a diverged run has nothing worth averaging
  n=$(find "$run" -maxdepth 1 -name 'checkpoint_[0-9]*.safetensors' | wc -l)
  ((n >= 1)) || continue
  ((n < keep)) && k=$n || k=$keep
  "$translate" average --out "$run" --last "$k" --output "$run/checkpoint_avg.safetensors" > "$run/avg.log" 2>&1 &&
    "$translate" evaluate --data "$data" --checkpoint "$run/checkpoint_avg.safetensors" --beam 5 \
      > "$run/avg_eval.log.tmp" 2>&1 && mv "$run/avg_eval.log.tmp" "$run/avg_eval.log" ||
    echo "study-depth-report: averaging $run failed (see $run/avg.log, avg_eval.log.tmp)" >&2
done

/usr/bin/python3 - "$dir" "$bleu_at" "${runs[@]}" <<'EOF'
import json, os, re, sys

out, bleu_at, runs = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
rows, valid_rows = [], []
for r in runs:
    depth, name = r.split(":", 1)
    run = os.path.join(out, f"L{depth}-{name}")
    m = os.path.join(run, "metrics.jsonl")
    if not os.path.exists(m):
        continue
    ev = [json.loads(l) for l in open(m) if l.strip()]
    valid = [e for e in ev if e["event"] == "valid"]
    test = [e for e in ev if e["event"] == "test"]
    div = [e for e in ev if e["event"] == "diverged"]
    done = open(os.path.join(run, "done")).read().split()[0] if os.path.exists(os.path.join(run, "done")) else "running"
    best = max(valid, key=lambda e: e["valid_bleu"]) if valid else None
    reach = next((e["step"] for e in valid if e["valid_bleu"] >= bleu_at), None)
    avg_bleu = avg_chrf = ""
    a = os.path.join(run, "avg_eval.log")
    if os.path.exists(a):
        t = open(a).read()
        b = re.search(r"^BLEU\S* = ([0-9.]+)", t, re.M); c = re.search(r"^chrF\S* = ([0-9.]+)", t, re.M)
        avg_bleu, avg_chrf = (b.group(1) if b else ""), (c.group(1) if c else "")
    row = {
        "depth": depth, "name": name, "status": done,
        "updates": max([e["step"] for e in ev if "step" in e and e["event"] in ("train", "valid", "diverged")] or [0]),
        "best_valid_bleu": f'{best["valid_bleu"]:.2f}' if best else "", "best_step": best["step"] if best else "",
        f"updates_to_bleu_{bleu_at:g}": reach if reach is not None else "",
        "test_bleu": f'{test[-1]["bleu"]:.2f}' if test else "", "test_chrf": f'{test[-1]["chrf"]:.2f}' if test else "",
        "avg_test_bleu": avg_bleu, "avg_test_chrf": avg_chrf,
        "diverged_step": div[0]["step"] if div else "", "diverged_lr": f'{div[0]["lr"]:.3g}' if div else "",
        "last_finite_loss": (f'{div[0]["last_finite_loss"]:.3f}' if div and div[0]["last_finite_loss"] is not None else ""),
        "train_seconds": f'{valid[-1]["train_seconds"]:.0f}' if valid else "",
    }
    rows.append(row)
    for e in valid:
        valid_rows.append((depth, name, e["step"], e["valid_loss"], e["valid_bleu"]))

if not rows:
    print("study-depth-report: no run has metrics yet"); sys.exit(0)
keys = list(rows[0].keys())
with open(os.path.join(out, "runs.csv"), "w") as f:
    f.write(",".join(keys) + "\n")
    for r in rows:
        f.write(",".join(str(r[k]) for k in keys) + "\n")
with open(os.path.join(out, "valid.csv"), "w") as f:
    f.write("depth,name,update,valid_loss,valid_bleu\n")
    for v in valid_rows:
        f.write(f"{v[0]},{v[1]},{v[2]},{v[3]:.4f},{v[4]:.2f}\n")
with open(os.path.join(out, "summary.md"), "w") as f:
    for depth in sorted({r["depth"] for r in rows}, key=int):
        f.write(f"\n### {depth} + {depth} layers\n\n")
        f.write(f"| run | status | updates | best valid BLEU (update) | updates to valid BLEU {bleu_at:g} | "
                "test BLEU / chrF2 (best) | test BLEU / chrF2 (average of last) | diverged (update, lr, last loss) | "
                "training time |\n|---|---|---|---|---|---|---|---|---|\n")
        for r in rows:
            if r["depth"] != depth:
                continue
            d = f'{r["diverged_step"]}, {r["diverged_lr"]}, {r["last_finite_loss"]}' if r["diverged_step"] != "" else "-"
            f.write(f'| {r["name"]} | {r["status"]} | {r["updates"]} | {r["best_valid_bleu"]} ({r["best_step"]}) | '
                    f'{r[f"updates_to_bleu_{bleu_at:g}"] or "not reached"} | {r["test_bleu"] or "-"} / {r["test_chrf"] or "-"} | '
                    f'{r["avg_test_bleu"] or "-"} / {r["avg_test_chrf"] or "-"} | {d} | '
                    f'{int(r["train_seconds"]) // 60 if r["train_seconds"] else "-"} min |\n')
print(open(os.path.join(out, "summary.md")).read())

# Data files for the curves: one block per run (gnuplot 'index').
for depth in sorted({r["depth"] for r in rows}, key=int):
    names = [r["name"] for r in rows if r["depth"] == depth]
    with open(os.path.join(out, f"valid_L{depth}.dat"), "w") as f:
        for n in names:
            f.write(f'"{n}"\n')
            for v in valid_rows:
                if v[0] == depth and v[1] == n:
                    f.write(f"{v[2]} {v[3]:.4f} {v[4]:.2f}\n")
            f.write("\n\n")
    # Per-layer statistics of the decoder (first and last logged update) for the core runs.
    with open(os.path.join(out, f"stats_L{depth}.dat"), "w") as f:
        for n in names:
            m = os.path.join(out, f"L{depth}-{n}", "metrics.jsonl")
            st = [json.loads(l) for l in open(m) if '"stats"' in l]
            for which, e in (("first", st[0] if st else None), ("last", st[-1] if st else None)):
                f.write(f"\"{n}, update {e['step'] if e else '-'}\"\n")
                if e:
                    for i, (g, h) in enumerate(zip(e["grad_norm"]["decoder"], e["hidden_var"]["decoder"])):
                        f.write(f"{i + 1} {g:.6g} {h:.6g}\n")
                f.write("\n\n")
with open(os.path.join(out, "plot_names"), "w") as f:
    for depth in sorted({r["depth"] for r in rows}, key=int):
        f.write(depth + " " + " ".join(r["name"] for r in rows if r["depth"] == depth) + "\n")
EOF

command -v gnuplot > /dev/null || { echo "study-depth-report: no gnuplot: curves not drawn"; exit 0; }
while read -r depth names; do
  read -r -a ns <<< "$names"
  plots_loss="" plots_bleu="" plots_g="" plots_h=""
  for i in "${!ns[@]}"; do
    plots_loss+="'$dir/valid_L$depth.dat' index $i using 1:2 with linespoints title '${ns[$i]}', "
    plots_bleu+="'$dir/valid_L$depth.dat' index $i using 1:3 with linespoints title '${ns[$i]}', "
    for j in 0 1; do
      k=$((2 * i + j))
      plots_g+="'$dir/stats_L$depth.dat' index $k using 1:2 with linespoints title columnheader(1), "
      plots_h+="'$dir/stats_L$depth.dat' index $k using 1:3 with linespoints title columnheader(1), "
    done
  done
  gnuplot <<GP
set terminal pngcairo size 1200,480 font ",10" noenhanced
set output '$dir/valid_L$depth.png'
set multiplot layout 1,2 title "$depth + $depth layers: validation (same data order, peak lr, effective batch)"
set xlabel 'update'; set ylabel 'validation loss'; set key top right; set grid
plot ${plots_loss%, }
set ylabel 'validation BLEU (200 sentences, greedy)'; set key top left
plot ${plots_bleu%, }
unset multiplot
set output '$dir/stats_L$depth.png'
set multiplot layout 1,2 title "$depth + $depth layers: decoder layers at the first and last logged update"
set xlabel 'decoder layer'; set ylabel 'gradient norm (before clipping)'; set logscale y; set key outside right
plot ${plots_g%, }
set ylabel 'variance of the layer output'
plot ${plots_h%, }
unset multiplot
GP
done < "$dir/plot_names"
echo "study-depth-report: $dir/summary.md, runs.csv, valid.csv, valid_L*.png, stats_L*.png"
