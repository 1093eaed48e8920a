#!/usr/bin/env bash
# Issue 3's absolute bars, measured on the full Bible training split:
#   training (alignment through LM) and tuning times, from model.json;
#   peak resident memory of training and of decoding (/usr/bin/time -v);
#   test-set decoding speed on two processes, tuned and untuned;
#   test BLEU and chrF, tuned and untuned (sacreBLEU, detokenised, raw references).
#
# usage: bench/smt_full.sh PREPARED MODEL [THREADS]
#   PREPARED  a directory made by 'mtcompare prepare' (default corpus: the Bible)
#   MODEL     where to train (an existing complete model is reused, not retrained)
set -euo pipefail
prepared=${1:?usage: bench/smt_full.sh PREPARED MODEL [THREADS]}
model=${2:?usage: bench/smt_full.sh PREPARED MODEL [THREADS]}
threads=${3:-2}
mtc=(python3 -m mtcompare)
src=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['src_lang'])" "$prepared/manifest.json")
tgt=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['tgt_lang'])" "$prepared/manifest.json")

peak() {  # command... : run it, print its wall time and peak memory
  /usr/bin/time -f "  wall %e s, peak memory %M KB" "$@"
}

echo "== training: $model"
if [ ! -f "$model/model.json" ]; then
  peak "${mtc[@]}" -q train smt "$prepared" --out "$model" --threads "$threads"
fi
python3 - "$model" <<'PY'
import json, sys
info = json.load(open(f"{sys.argv[1]}/model.json"))
seconds = info["seconds"]
before = sum(v for k, v in seconds.items() if k != "tuning")
print("  stages:", ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
print(f"  alignment through LM: {before / 60:.1f} min; tuning: {seconds.get('tuning', 0) / 60:.1f} min")
weights = json.load(open(f"{sys.argv[1]}/weights.json"))
print(f"  MERT: {len(weights['history'])} iterations, tokenised dev BLEU "
      f"{weights['dev_bleu_untuned']:.2f} untuned -> {weights['dev_bleu']:.2f} tuned "
      f"({weights['stop_reason']})")
PY

lines=$(wc -l < "$prepared/test.$src")
for variant in tuned untuned; do
  flag=""; [ "$variant" = untuned ] && flag="--untuned"
  out="$model/test.$variant.$tgt"
  echo "== decoding $lines test lines, $variant weights, $threads processes"
  start=$(date +%s.%N)
  peak "${mtc[@]}" translate "$model" -i "$prepared/test.$src" -o "$out" --threads "$threads" \
    $flag 2> "$out.log"
  end=$(date +%s.%N)
  grep -E "decoded|wall" "$out.log" | sed -e 's/^.*: decoded/  decoded/'
  python3 -c "import sys; print(f'  {int(sys.argv[1]) / (float(sys.argv[3]) - float(sys.argv[2])):.2f} sentences/s including loading the model and reading its tables')" "$lines" "$start" "$end"
  "${mtc[@]}" -q evaluate --ref "$prepared/test.$tgt" "$out"
done
