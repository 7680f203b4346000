#!/usr/bin/env bash
# The "CUDA attention (H200)" figures of docs/performance.md in one go, on a machine with a GPU:
# build (unless BUILD already holds the binaries), check every GPU spec and the GPU model against
# the float64 reference and the CPU engine (tests/cuda), time attnlab, then PyTorch SDPA and
# FlexAttention on the same cases, then whole-model prefill/decode of a Qwen2.5-0.5B-shaped
# checkpoint against PyTorch + transformers (bench/cuda_model_bench.py), and print the tables.
# Usage:
#   bash bench/cuda_attention_bench.sh [quick]        (quick: attnlab only, no torch)
# Env: BUILD (default build-cuda), OUT (default /tmp/attnlab-cuda-bench), REPEATS (default 10),
# SKIP_CHECK=1 (tests already run), NO_FLEX=1 (SDPA only), NO_MMA=1 (no A/B run of the mma.sync kernel),
# NO_MODEL=1 (no whole-model comparison).
# If BUILD/lib exists (shared libraries carried with prebuilt binaries), it joins
# LD_LIBRARY_PATH: docs/cuda.md says when that is needed.
set -euo pipefail
BUILD=${BUILD:-build-cuda}
OUT=${OUT:-/tmp/attnlab-cuda-bench}
REPEATS=${REPEATS:-10}
mkdir -p "$OUT"
[ -d "$BUILD/lib" ] && export LD_LIBRARY_PATH="$PWD/$BUILD/lib:${LD_LIBRARY_PATH:-}"
if [ ! -x "$BUILD/cuda_attention_bench" ] || [ ! -x "$BUILD/tests/cuda/attnlab_tests_cuda" ] || [ ! -x "$BUILD/attnlab" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DATTNLAB_CUDA_TESTS=ON -DATTNLAB_BENCH=OFF
  cmake --build "$BUILD" --target attnlab_tests_cuda cuda_attention_bench attnlab
fi
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader || true

if [ "${SKIP_CHECK:-0}" != 1 ]; then
  echo "== check: tests/cuda against the float64 reference"
  "$BUILD/tests/cuda/attnlab_tests_cuda" --gtest_brief=1 > "$OUT/check.log" 2>&1 && status=ok || status=FAILED
  grep -E "PASSED|FAILED|tests ran" "$OUT/check.log" | tail -5
  echo "check: $status (log: $OUT/check.log)"
fi

echo "== attnlab"
cases=()
for T in 1024 4096 16384; do
  for spec in causal "causal+window(size=1024)" "causal+streaming(sink=4,window=1024)" \
              "causal+power(block=256,window=4,sink=1)" "causal+document"; do
    cases+=("$spec@1@$T@$T@32@8@128")
  done
done
cases+=("causal@8@1@8192@32@8@128" "causal@1@1@65536@32@8@128")
# Head dim 256 (Gemma-shaped heads: H = 8, Hkv = 4): the mma.sync kernel, prefill and decode.
cases+=("causal@1@16384@16384@8@4@256" "causal@1@1@32768@8@4@256")
"$BUILD/cuda_attention_bench" --repeats "$REPEATS" --copy "${cases[@]}" | tee "$OUT/attnlab.jsonl"
if [ "${NO_MMA:-0}" != 1 ]; then
  # The same cases on the mma.sync prefill kernel (the wgmma kernel is the default on sm_90a).
  echo "== attnlab, mma.sync prefill kernel (ATTNLAB_CUDA_KERNEL=mma)"
  ATTNLAB_CUDA_KERNEL=mma "$BUILD/cuda_attention_bench" --repeats "$REPEATS" "${cases[@]}" > "$OUT/attnlab_mma.jsonl"
  python3 - "$OUT/attnlab.jsonl" "$OUT/attnlab_mma.jsonl" <<'PY'
import json, sys
rows = [[json.loads(l) for l in open(f) if l.startswith('{"impl": "attnlab"')] for f in sys.argv[1:]]
print("| case | B·T·S | wgmma ms | TFLOP/s | mma.sync ms | TFLOP/s | speed-up |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
for a, b in zip(*rows):
    tf = lambda r: r["flops"] / (r["ms"] * 1e9)
    print(f"| {a['spec']} | {a['B']}·{a['T']}·{a['S']} | {a['ms']:.3f} | {tf(a):.1f} | {b['ms']:.3f} | {tf(b):.1f} | {b['ms'] / a['ms']:.2f} |")
PY
fi
"$BUILD/cuda_attention_bench" --repeats 1 --check "causal+power(block=256,window=4,sink=1)@1@1024@1024@32@8@128" \
  "causal+document@1@1024@1024@32@8@128" "causal@1@1@8192@32@8@128" | tee "$OUT/check_bench.jsonl"

if [ "${1:-}" != quick ]; then
  echo "== PyTorch SDPA and FlexAttention"
  PYTHONUNBUFFERED=1 python3 bench/cuda_attention_bench.py --attnlab "$OUT/attnlab.jsonl" --repeats "$REPEATS" \
    --json "$OUT/torch.jsonl" ${NO_FLEX:+--no-flex} 2> "$OUT/torch.log" | tee "$OUT/table.md"
  grep "^#" "$OUT/torch.log" || true
fi

if [ "${1:-}" != quick ] && [ "${NO_MODEL:-0}" != 1 ]; then
  echo "== whole model: attnlab --device cuda vs PyTorch + transformers (Qwen2.5-0.5B shapes, random bf16)"
  PYTHONUNBUFFERED=1 python3 bench/cuda_model_bench.py --attnlab "$BUILD/attnlab" -r "${MODEL_REPEATS:-5}" \
    --json "$OUT/model.json" 2> "$OUT/model.log" | tee "$OUT/model.md"
  grep "^#" "$OUT/model.log" || true
fi
