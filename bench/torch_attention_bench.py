#!/usr/bin/python3
"""The peer measurement for `attnlab bench attention`: PyTorch's CPU attention on one shape
(Debian's python3-torch 1.13, run with /usr/bin/python3).

q (1, H, T, D), k (1, Hkv, S, D), v (1, Hkv, S, Dv), random; k/v are expanded over the GQA groups
once, outside the timing. Queries sit at positions S-T ... S-1, so with T < S the causal mask is
the bottom-right-aligned one (query i sees keys j <= S-T+i); `window:W` also hides keys with
pos - j >= W (Mistral's convention). The timed call is torch's scaled_dot_product_attention where
this torch has it (public from 2.0, `_scaled_dot_product_attention` in 1.13), else the explicit
softmax(q k^T * scale + mask) v; `backend` in the output says which ran. Paths that materialise
the (H, T, S) scores run over heads in chunks of at most 1 GiB of f32 scores.

Usage: torch_attention_bench.py --T 1024 --S 1024 --H 8 --hkv 2 --D 64 [--Dv 64] [--dtype f32|bf16]
       [--mask causal|none|window:W] [--threads N] [--repeats 5] [--backend auto|math] [--check] [--json]
--json prints one object {"backend", "median_s", "times_s", "threads", "torch", ...}.
--check also reports the largest absolute difference from a float64 reference (not timed).
"""
import argparse, json, math, os, statistics, sys, time

import torch

F = torch.nn.functional
SCORE_CHUNK_BYTES = 1 << 30  # f32 scores per chunk of heads on materialising paths


def parse_args(argv):
    p = argparse.ArgumentParser(prog="torch_attention_bench.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--T", type=int, required=True, help="queries")
    p.add_argument("--S", type=int, required=True, help="keys (the queries are the last T positions)")
    p.add_argument("--H", type=int, required=True, help="query heads")
    p.add_argument("--hkv", type=int, default=None, help="kv heads (default: H)")
    p.add_argument("--D", type=int, required=True, help="query/key head dim")
    p.add_argument("--Dv", type=int, default=None, help="value head dim (default: D)")
    p.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    p.add_argument("--mask", default="causal", help="causal | none | window:W")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--repeats", type=int, default=5, help="timed runs after one warm-up")
    p.add_argument("--backend", choices=["auto", "math"], default="auto",
                   help="auto: torch's SDPA where it exists; math: the explicit softmax path")
    p.add_argument("--check", action="store_true", help="also report max |out - float64 reference|")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    a.hkv = a.H if a.hkv is None else a.hkv
    a.Dv = a.D if a.Dv is None else a.Dv
    for name in ("T", "S", "H", "hkv", "D", "Dv", "threads", "repeats"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(a, name)}")
    if a.H % a.hkv:
        p.error(f"--H {a.H} is not a multiple of --hkv {a.hkv}")
    a.window = 0
    if a.mask.startswith("window:"):
        try:
            a.window = int(a.mask.split(":", 1)[1])
        except ValueError:
            a.window = 0
        if a.window < 1:
            p.error(f"--mask {a.mask}: the window must be a positive integer")
    elif a.mask not in ("causal", "none"):
        p.error(f"--mask must be causal, none or window:W, got '{a.mask}'")
    if a.mask != "none" and a.T > a.S:
        p.error(f"--mask {a.mask} needs T <= S (queries are the last T of S positions), got T={a.T} S={a.S}")
    return a


def build_mask(T, S, window):
    """(T, S) bool, True = attend: bottom-right-aligned causal, optionally windowed."""
    pos = torch.arange(S - T, S).unsqueeze(1)  # (T, 1) query positions
    key = torch.arange(S).unsqueeze(0)  # (1, S)
    mask = key <= pos
    if window:
        mask &= pos - key < window
    return mask


def pick_backend(forced):
    """(name, fn(q, k, v, mask, is_causal) or None for the math path, materialises scores)."""
    if forced == "math":
        return "math", None, True
    sdpa = getattr(F, "scaled_dot_product_attention", None)
    if sdpa is not None:  # torch >= 2.0: fused CPU kernels that need not materialise the scores
        return "sdpa", lambda q, k, v, m, c: sdpa(q, k, v, attn_mask=m, is_causal=c), False
    private = getattr(F, "_scaled_dot_product_attention", None)
    if private is not None:  # torch 1.13: returns (out, weights); a math kernel underneath
        return ("sdpa_private",
                lambda q, k, v, m, c: private(q, k, v, attn_mask=m, dropout_p=0.0, need_attn_weights=False,
                                              is_causal=c)[0],
                True)
    return "math", None, True


def math_attention(q, k, v, mask, scale):
    s = torch.matmul(q, k.transpose(-1, -2)) * scale
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    return torch.matmul(torch.softmax(s, dim=-1), v)


def make_runner(a, q, k, v):
    name, fn, materialises = pick_backend(a.backend)
    T, S, H = a.T, a.S, a.H
    # T == S: the bottom-right and top-left causal masks coincide, so torch's is_causal serves.
    is_causal = a.mask == "causal" and T == S and fn is not None
    mask = None if a.mask == "none" or is_causal else build_mask(T, S, a.window)
    chunk = H
    if materialises:
        chunk = max(1, min(H, SCORE_CHUNK_BYTES // (T * S * 4)))
    scale = 1.0 / math.sqrt(a.D)
    out = torch.empty(1, H, T, a.Dv, dtype=q.dtype)

    def one(qc, kc, vc):
        return fn(qc, kc, vc, mask, is_causal) if fn is not None else math_attention(qc, kc, vc, mask, scale)

    def run():
        if chunk == H:
            return one(q, k, v)
        for h0 in range(0, H, chunk):
            h1 = min(H, h0 + chunk)
            out[:, h0:h1] = one(q[:, h0:h1], k[:, h0:h1], v[:, h0:h1])
        return out

    return name, chunk, run


def main(argv):
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    q = torch.randn(1, a.H, a.T, a.D, dtype=dtype)
    k = torch.randn(1, a.hkv, a.S, a.D, dtype=dtype)
    v = torch.randn(1, a.hkv, a.S, a.Dv, dtype=dtype)
    group = a.H // a.hkv
    k_full = k.repeat_interleave(group, dim=1).contiguous()  # (1, H, S, D): head h reads kv head h // group
    v_full = v.repeat_interleave(group, dim=1).contiguous()
    backend, chunk, run = make_runner(a, q, k_full, v_full)

    times = []
    with torch.inference_mode():
        out = run()  # warm-up
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            out = run()
            times.append(time.perf_counter() - t0)
        max_err = None
        if a.check:
            mask = None if a.mask == "none" else build_mask(a.T, a.S, a.window)
            ref = math_attention(q.double(), k_full.double(), v_full.double(), mask, 1.0 / math.sqrt(a.D))
            max_err = (out.double() - ref).abs().max().item()

    median = statistics.median(times)
    result = {"backend": backend, "median_s": median, "times_s": times, "threads": torch.get_num_threads(),
              "torch": torch.__version__, "head_chunk": chunk}
    if max_err is not None:
        result["max_abs_err"] = max_err
    if a.json:
        print(json.dumps(result))
    else:
        shape = f"T={a.T} S={a.S} H={a.H} Hkv={a.hkv} D={a.D} Dv={a.Dv} {a.dtype} mask={a.mask}"
        extra = f", max |err| {max_err:.3g}" if max_err is not None else ""
        print(f"torch {torch.__version__} {backend}{'' if chunk == a.H else f' (heads by {chunk})'}: {shape}, "
              f"{result['threads']} threads: median {median * 1e3:.3f} ms over {a.repeats} runs{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
