#!/usr/bin/env bash
# The cost of statistics-only attention probing (issue 4): prompt processing of T tokens on a
# random Qwen2.5-0.5B-shaped model (its layer shapes; LAYERS layers, default 2, so a 32k
# prefill fits in minutes on a 2-core VM) plain, with the heads probe's per-row statistics in
# every layer, and with column sums too. Each mode runs in its own process (its own peak RSS),
# alternating modes over ROUNDS rounds; the table gives the median time per mode and the
# ratios to plain. Usage: bash bench/stats_bench.sh [T=32768] [ROUNDS=2] [LAYERS=2]
set -euo pipefail
T=${1:-32768}; ROUNDS=${2:-2}; LAYERS=${3:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${ATTNLAB:-$ROOT/build/attnlab}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
python3 - "$ROOT/bench/configs/qwen2.5-0.5b.json" "$DIR/config.json" "$LAYERS" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["num_hidden_layers"] = int(sys.argv[3]); c["max_window_layers"] = int(sys.argv[3])
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
"$B" make-model --config "$DIR/config.json" --out "$DIR/model" --dtype bf16 --seed 1 > /dev/null
for round in $(seq "$ROUNDS"); do
  for mode in none rows columns; do
    "$B" bench -m "$DIR/model" -c "$T" -p "$T" -n 0 -r 1 --stats "$mode" --json > "$DIR/$mode.$round.json"
  done
done
python3 - "$DIR" "$ROUNDS" "$T" "$LAYERS" <<'PY'
import json, statistics, sys
d, rounds, T, L = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
res = {}
for mode in ["none", "rows", "columns"]:
    rows = [json.load(open(f"{d}/{mode}.{r}.json"))[0] for r in range(1, rounds + 1)]
    res[mode] = (statistics.median(T / r["avg_ts"] for r in rows), max(r["peak_rss_bytes"] for r in rows))
print(f"prefill T={T}, Qwen2.5-0.5B shapes, {L} layers, bf16 weights; median of {rounds} rounds")
print("| mode | time | time / plain | peak RSS | RSS / plain |")
print("| --- | ---: | ---: | ---: | ---: |")
for mode, name in [("none", "plain forward"), ("rows", "+ per-row statistics"), ("columns", "+ column sums")]:
    t, m = res[mode]
    print(f"| {name} | {t:.2f} s | {t / res['none'][0]:.3f} | {m / 2**20:.0f} MiB | {m / res['none'][1]:.3f} |")
PY
