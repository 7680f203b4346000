#!/usr/bin/env bash
# The attention-operator figures of docs/performance.md, in one go (about 5 minutes on a 2-core
# VM; run it on a quiet machine). Usage: bash bench/cpu_attention_bench.sh [build/attnlab]
set -euo pipefail
B=${1:-build/attnlab}
echo "== dense causal f32, T=S=4096";  "$B" bench attention --spec causal -T 4096 -H 32 --hkv 8 -D 128 -r 5
echo "== dense causal bf16, T=S=4096"; "$B" bench attention --spec causal -T 4096 -H 32 --hkv 8 -D 128 -r 5 --dtype bf16
echo "== decode, S=32k";               "$B" bench attention --spec causal -T 1 -S 32768 -H 32 --hkv 8 -D 128 -r 20 --no-torch
echo "== sliding window, S=32k";       "$B" bench attention --spec "causal+window(size=1024)" -T 32768 -H 8 --hkv 2 -D 128 -r 3 --dense --no-torch
echo "== PowerAttention, S=32k";       "$B" bench attention --spec "causal+power(block=256,window=4,sink=1)" -T 32768 -H 8 --hkv 2 -D 128 -r 3 --dense --no-torch
