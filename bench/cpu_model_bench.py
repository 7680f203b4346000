#!/usr/bin/python3
"""End-to-end CPU benchmark of issue 'engine core', all figures from one run:

1. the machine's FP32 FMA peak and DRAM bandwidth (build/bench/peak --json),
2. `attnlab bench` (pp / tg, llama-bench style) on a model directory,
3. the same tests through PyTorch eager (bench/torch_decoder_bench.py) in f32 and bf16,

then prints the ratios the issue asks for: prefill useful GFLOP/s vs the FMA peak, decode
weight bytes per token vs the read bandwidth, peak RSS vs weights + KV cache, attnlab vs torch.

Usage: bench/cpu_model_bench.py MODEL_DIR [-p 512] [-n 128] [-r 5] [--no-torch]
"""
import argparse, json, os, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def model_flops_per_token(cfg, n_prompt):
    """Useful FLOPs per prompt token: 2 x matmul params of the blocks + causal attention
    (QK and PV over on average (n_prompt + 1) / 2 keys) + the lm_head once per prompt."""
    C, I, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    H = cfg["num_attention_heads"]
    Hkv = cfg.get("num_key_value_heads", H)
    D = cfg.get("head_dim") or C // H
    block = C * H * D + 2 * C * Hkv * D + H * D * C + 3 * C * I
    attention = 2 * 2 * H * D * (n_prompt + 1) / 2
    lm_head = 2 * C * cfg["vocab_size"] / n_prompt
    return L * (2 * block + attention) + lm_head


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-r", type=int, default=5)
    ap.add_argument("--no-torch", action="store_true")
    a = ap.parse_args()
    cfg = json.load(open(os.path.join(a.model_dir, "config.json")))
    peak = run_json([os.path.join(ROOT, "build/bench/peak"), "--json"])
    ours = run_json([os.path.join(ROOT, "build/attnlab"), "bench", "-m", a.model_dir, "-p", str(a.p),
                     "-n", str(a.n), "-r", str(a.r), "--json"])
    rows = {r["test"]: r for r in ours}
    weight_bytes = ours[0]["size_bytes"]
    flops = model_flops_per_token(cfg, a.p)
    pp = rows[f"pp{a.p}"]["avg_ts"]
    tg = rows[f"tg{a.n}"]["avg_ts"]
    C, L = cfg["hidden_size"], cfg["num_hidden_layers"]
    H = cfg["num_attention_heads"]
    Hkv = cfg.get("num_key_value_heads", H)
    D = cfg.get("head_dim") or C // H
    # Decode reads every weight once per token (the tied embedding serves as lm_head; the
    # embedding row gather is negligible) plus the KV cache (f32), on average n/2 positions.
    kv_bytes_per_pos = 2 * L * Hkv * D * 4
    bytes_per_token = weight_bytes + kv_bytes_per_pos * a.n / 2
    print(f"machine: FMA peak {peak['fma_gflops']:.1f} GFLOP/s ({peak['threads']} threads, {peak['isa']}), "
          f"read {peak['read_gbs']:.1f} GB/s, triad {peak['triad_gbs']:.1f} GB/s")
    print(f"model: {a.model_dir}: {weight_bytes / 2**20:.1f} MiB of weights, {flops / 1e9:.3f} GFLOP per prompt token (pp{a.p})")
    print()
    print("| test | attnlab t/s | ratio to the machine |")
    print("| --- | ---: | --- |")
    print(f"| pp{a.p} | {pp:.1f} ± {rows[f'pp{a.p}']['stddev_ts']:.1f} | {pp * flops / 1e9:.1f} GFLOP/s = "
          f"{100 * pp * flops / 1e9 / peak['fma_gflops']:.1f}% of FMA peak |")
    print(f"| tg{a.n} | {tg:.1f} ± {rows[f'tg{a.n}']['stddev_ts']:.1f} | {tg * bytes_per_token / 1e9:.1f} GB/s = "
          f"{100 * tg * bytes_per_token / 1e9 / peak['read_gbs']:.1f}% of read bandwidth |")
    kv_total = kv_bytes_per_pos * max(a.p, a.n)
    rss = ours[0]["peak_rss_bytes"]
    print(f"| peak RSS | {rss / 2**20:.1f} MiB | {rss / (weight_bytes + kv_total):.2f} x (weights + KV cache of "
          f"{kv_total / 2**20:.1f} MiB) |")
    if a.no_torch:
        return
    print()
    print("| peer | pp t/s | tg t/s | attnlab pp / peer | attnlab tg / peer | peer peak RSS |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for dtype in ("f32", "bf16"):
        t = run_json(["/usr/bin/python3", os.path.join(ROOT, "bench/torch_decoder_bench.py"), a.model_dir, "-p", str(a.p),
                      "-n", str(a.n), "-r", str(a.r), "-t", str(peak["threads"]), "--dtype", dtype, "--json"])
        tr = {r["test"]: r for r in t}
        tpp, ttg = tr[f"pp{a.p}"]["avg_ts"], tr[f"tg{a.n}"]["avg_ts"]
        print(f"| {t[0]['backend']} | {tpp:.1f} | {ttg:.2f} | {pp / tpp:.2f}x | {tg / ttg:.2f}x | "
              f"{t[0]['peak_rss_bytes'] / 2**20:.0f} MiB |")


if __name__ == "__main__":
    main()
