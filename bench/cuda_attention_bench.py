#!/usr/bin/env python3
"""The peers of bench/cuda_attention_bench.cu on the same GPU: PyTorch SDPA (flash, cuDNN and
memory-efficient backends) and FlexAttention with the same masks, on the cases attnlab ran.

Reads attnlab's JSON lines (one per case, plus an optional {"impl": "copy"} bandwidth line),
times each case's peers with CUDA events (3 warm-ups, median of --repeats), and prints one
Markdown table. TFLOP/s for every implementation use attnlab's count for the case (kept 64x64
tiles, 4*D per score), so the ratios are ratios of times. Decode rows report the K/V bytes
over the time as a fraction of the measured copy bandwidth.

Masks (queries at S-T .. S-1, mask_mod positions as in the attnlab spec):
  causal, window(size), streaming(sink, window), power(block, window, sink), chunked(size),
  prefix(len), document (document k has 256*(1 + 7k mod 8) positions, as in the C++ bench).
SDPA runs only the dense causal and decode cases (it has no block-sparse masks); FlexAttention
runs the prefill cases (T = S).

Usage: cuda_attention_bench.py --attnlab attnlab.jsonl [--repeats 10] [--json out.jsonl] [--no-flex]
"""
import argparse, json, re, statistics, sys

import torch
import torch._dynamo
import torch.nn.functional as F


def parse_spec(spec):
    mechs = []
    for part in filter(None, spec.split("+")):
        m = re.fullmatch(r"(\w+)(?:\((.*)\))?", part.strip())
        params = {}
        if m.group(2):
            for kv in m.group(2).split(","):
                k, v = kv.split("=")
                params[k.strip()] = int(float(v))
        mechs.append((m.group(1), params))
    return mechs


def bench_segments(S, device):
    seg, k = [], 0
    while len(seg) < S:
        seg += [k] * (256 * (1 + (7 * k) % 8))
        k += 1
    return torch.tensor(seg[:S], dtype=torch.int32, device=device)


def mask_mod_for(spec, S, device):
    mechs = parse_spec(spec)
    seg = bench_segments(S, device) if any(n == "document" for n, _ in mechs) else None

    def mask_mod(b, h, q_idx, kv_idx):
        keep = q_idx >= 0  # all-true tensor of the right shape
        for name, p in mechs:
            if name == "causal":
                keep = keep & (kv_idx <= q_idx)
            elif name == "window":
                keep = keep & ((q_idx - kv_idx).abs() < p["size"])
            elif name == "streaming":
                keep = keep & ((kv_idx < p.get("sink", 4)) | ((q_idx - kv_idx).abs() < p["window"]))
            elif name == "chunked":
                keep = keep & (q_idx // p["size"] == kv_idx // p["size"])
            elif name == "prefix":
                keep = keep & ((kv_idx < p["len"]) | (kv_idx <= q_idx))
            elif name == "document":
                keep = keep & (seg[q_idx] == seg[kv_idx])
            elif name == "power":
                blk, win, sink = p.get("block", 256), p.get("window", 5), p.get("sink", 1)
                d = q_idx // blk - kv_idx // blk
                kb = kv_idx // blk
                keep = keep & ((d < win) | (kb < sink) | ((d >= 0) & ((d & (d - 1)) == 0)))
            else:
                raise ValueError(f"no mask_mod for {name}")
        return keep

    return mask_mod


def time_ms(fn, repeats):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def sdpa_times(c, q, k, v, repeats):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    out = {}
    causal = c["T"] == c["S"] and "causal" in c["spec"]
    for name, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
                          ("efficient", SDPBackend.EFFICIENT_ATTENTION)):
        try:
            with sdpa_kernel(backend):
                fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
                out[name] = time_ms(fn, repeats)
        except Exception as e:  # a backend that refuses the shape is reported, not fatal
            out[name] = None
            print(f"# sdpa {name} on {c['spec']} T={c['T']} S={c['S']}: {type(e).__name__}: {str(e)[:120]}", file=sys.stderr)
    return out


def flex_time(c, q, k, v, repeats, compiled):
    from torch.nn.attention.flex_attention import create_block_mask
    try:
        bm = create_block_mask(mask_mod_for(c["spec"], c["S"], q.device), None, None, c["T"], c["S"], device=q.device)
        return time_ms(lambda: compiled(q, k, v, block_mask=bm, enable_gqa=True), repeats)
    except Exception as e:
        print(f"# flex on {c['spec']} T={c['T']}: {type(e).__name__}: {str(e)[:160]}", file=sys.stderr)
        return None


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--attnlab", required=True)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-flex", action="store_true")
    a = ap.parse_args(argv)
    rows = [json.loads(l) for l in open(a.attnlab) if l.startswith("{")]
    copy = next((r for r in rows if r["impl"] == "copy"), None)
    cases = [r for r in rows if r["impl"] == "attnlab"]
    dev = torch.device("cuda")
    print(f"# torch {torch.__version__}, {torch.cuda.get_device_name()}, cuDNN {torch.backends.cudnn.version()}", file=sys.stderr)
    compiled = None
    if not a.no_flex:
        from torch.nn.attention.flex_attention import flex_attention
        # One compiled kernel per (mask, shape): raise the recompile limit (default 8), past
        # which torch would silently fall back to the unfused, materialising path.
        for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit", "accumulated_cache_size_limit"):
            if hasattr(torch._dynamo.config, name):
                setattr(torch._dynamo.config, name, 256)
        compiled = torch.compile(flex_attention, dynamic=False)
    results = []
    torch.manual_seed(0)
    for c in cases:
        B, T, S, H, Hkv, D = (c[x] for x in ("B", "T", "S", "H", "Hkv", "D"))
        q = torch.randn(B, H, T, D, device=dev, dtype=torch.bfloat16) * 1.5
        k = torch.randn(B, Hkv, S, D, device=dev, dtype=torch.bfloat16) * 1.5
        v = torch.randn(B, Hkv, S, D, device=dev, dtype=torch.bfloat16)
        r = dict(c)
        dense_causal = c["spec"] == "causal"
        r["sdpa"] = sdpa_times(c, q, k, v, a.repeats) if dense_causal else {}
        r["flex"] = flex_time(c, q, k, v, a.repeats, compiled) if compiled and T == S else None
        results.append(r)
        del q, k, v
        torch.cuda.empty_cache()
        print(json.dumps(r), file=sys.stderr)
    if a.json:
        with open(a.json, "w") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")

    tf = lambda r, ms: r["flops"] / (ms * 1e9) if ms else None
    fmt = lambda x, p=1: "-" if x is None else f"{x:.{p}f}"
    print("\n| case | B·T·S, H/Hkv·D | kept | attnlab ms | TFLOP/s | SDPA flash | SDPA cuDNN | SDPA eff. | attnlab / best SDPA | Flex ms | Flex TFLOP/s | attnlab / Flex |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        if r["decode"]:
            continue
        s = r["sdpa"]
        best = min((t for t in s.values() if t), default=None)
        print(f"| {r['spec']} | {r['B']}·{r['T']}·{r['S']}, {r['H']}/{r['Hkv']}·{r['D']} | {r['kept_fraction']:.3f} | {r['ms']:.3f} | {fmt(tf(r, r['ms']))} | "
              f"{fmt(tf(r, s.get('flash')))} | {fmt(tf(r, s.get('cudnn')))} | {fmt(tf(r, s.get('efficient')))} | "
              f"{fmt(best / r['ms'] if best else None, 2)} | {fmt(r['flex'], 3)} | {fmt(tf(r, r['flex']))} | "
              f"{fmt(r['flex'] / r['ms'] if r['flex'] else None, 2)} |")
    bw = copy["GBps"] if copy else None
    print(f"\nDecode (copy bandwidth measured in the same run: {fmt(bw, 0)} GB/s, read + write):\n")
    print("| case | B·T·S, H/Hkv·D | splits | attnlab ms | K/V GB/s | % of copy BW | SDPA flash ms | SDPA cuDNN ms | SDPA eff. ms | attnlab / best SDPA |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        if not r["decode"]:
            continue
        s = r["sdpa"]
        best = min((t for t in s.values() if t), default=None)
        gbs = r["kv_bytes"] / (r["ms"] * 1e6)
        print(f"| {r['spec']} | {r['B']}·{r['T']}·{r['S']}, {r['H']}/{r['Hkv']}·{r['D']} | {r['splits']} | {r['ms']:.4f} | {gbs:.0f} | "
              f"{fmt(100 * gbs / bw if bw else None)} | {fmt(s.get('flash'), 4)} | {fmt(s.get('cudnn'), 4)} | "
              f"{fmt(s.get('efficient'), 4)} | {fmt(best / r['ms'] if best else None, 2)} |")


if __name__ == "__main__":
    main(sys.argv[1:])
