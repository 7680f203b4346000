#!/usr/bin/python3
"""The peer measurement for `attnlab bench`: the same checkpoint, the same ppN / tgN tests,
run through PyTorch eager on the CPU (Debian's python3-torch 1.13, run with /usr/bin/python3; transformers is not packaged for
Debian 12, so the Llama/Qwen2 decoder is written here in plain torch ops: RMSNorm, RoPE,
GQA eager attention with a KV cache, SiLU-gated MLP, tied or untied lm_head).

Usage: torch_decoder_bench.py MODEL_DIR [-p 512] [-n 128] [-r 5] [-t THREADS] [--dtype bf16|f32] [--json]
  --dtype f32 : weights upcast to float32 (same arithmetic as attnlab: f32 activations)
  --dtype bf16: weights and activations in bfloat16 (oneDNN AVX512-BF16 matmuls where present)
"""
import argparse, json, math, os, resource, statistics, struct, sys, time

import numpy as np
import torch


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = np.asarray(data[a:b])
        if info["dtype"] == "BF16":
            t = torch.from_numpy(raw.view(np.int16).copy()).view(torch.bfloat16)
        elif info["dtype"] == "F32":
            t = torch.from_numpy(raw.view(np.float32).copy())
        elif info["dtype"] == "F16":
            t = torch.from_numpy(raw.view(np.float16).copy())
        else:
            raise SystemExit(f"unsupported dtype {info['dtype']} for {name}")
        tensors[name] = t.reshape(info["shape"])
    return tensors


class Decoder:
    def __init__(self, model_dir, dtype):
        cfg = json.load(open(os.path.join(model_dir, "config.json")))
        if cfg["model_type"] not in ("llama", "qwen2", "mistral"):
            raise SystemExit("this peer bench implements llama/qwen2/mistral only")
        self.cfg = cfg
        w = load_safetensors(os.path.join(model_dir, "model.safetensors"))
        self.w = {k: v.to(dtype) for k, v in w.items()}
        self.dtype = dtype
        self.L = cfg["num_hidden_layers"]
        self.H = cfg["num_attention_heads"]
        self.Hkv = cfg.get("num_key_value_heads", self.H)
        self.C = cfg["hidden_size"]
        self.D = cfg.get("head_dim") or self.C // self.H
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        theta = cfg.get("rope_theta") or cfg.get("rope_parameters", {}).get("rope_theta", 10000.0)
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.D, 2, dtype=torch.float32) / self.D))
        self.bias = cfg["model_type"] == "qwen2" or cfg.get("attention_bias", False)
        self.lm_head = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])

    def norm(self, x, weight):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * weight.float()).to(self.dtype)

    def rope(self, x, pos):  # x (T, heads, D)
        freqs = torch.outer(pos.float(), self.inv_freq)
        cos, sin = freqs.cos().to(x.dtype)[:, None, :], freqs.sin().to(x.dtype)[:, None, :]
        x1, x2 = x[..., : self.D // 2], x[..., self.D // 2 :]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    @torch.inference_mode()
    def forward(self, ids, cache):
        T = ids.shape[0]
        pos0 = cache["n"]
        pos = torch.arange(pos0, pos0 + T)
        x = self.w["model.embed_tokens.weight"][ids]
        F = torch.nn.functional
        for l in range(self.L):
            p = f"model.layers.{l}."
            h = self.norm(x, self.w[p + "input_layernorm.weight"])
            q = F.linear(h, self.w[p + "self_attn.q_proj.weight"], self.w.get(p + "self_attn.q_proj.bias") if self.bias else None)
            k = F.linear(h, self.w[p + "self_attn.k_proj.weight"], self.w.get(p + "self_attn.k_proj.bias") if self.bias else None)
            v = F.linear(h, self.w[p + "self_attn.v_proj.weight"], self.w.get(p + "self_attn.v_proj.bias") if self.bias else None)
            q = self.rope(q.view(T, self.H, self.D), pos)
            k = self.rope(k.view(T, self.Hkv, self.D), pos)
            v = v.view(T, self.Hkv, self.D)
            ck, cv = cache["k"][l], cache["v"][l]
            ck[pos0 : pos0 + T] = k
            cv[pos0 : pos0 + T] = v
            K = ck[: pos0 + T].transpose(0, 1).repeat_interleave(self.H // self.Hkv, dim=0)
            V = cv[: pos0 + T].transpose(0, 1).repeat_interleave(self.H // self.Hkv, dim=0)
            Q = q.transpose(0, 1)
            # Eager attention as transformers' "eager" implementation (torch 1.13 has no SDPA).
            scores = torch.matmul(Q, K.transpose(1, 2)) * (1.0 / math.sqrt(self.D))
            if T > 1:
                S = pos0 + T
                mask = torch.ones(T, S, dtype=torch.bool).tril(diagonal=pos0)
                scores = scores.masked_fill(~mask, float("-inf"))
            o = torch.matmul(torch.softmax(scores.float(), dim=-1).to(self.dtype), V)
            o = o.transpose(0, 1).reshape(T, self.H * self.D)
            x = x + F.linear(o, self.w[p + "self_attn.o_proj.weight"])
            h = self.norm(x, self.w[p + "post_attention_layernorm.weight"])
            g = F.linear(h, self.w[p + "mlp.gate_proj.weight"])
            u = F.linear(h, self.w[p + "mlp.up_proj.weight"])
            x = x + F.linear(F.silu(g) * u, self.w[p + "mlp.down_proj.weight"])
        cache["n"] = pos0 + T
        last = self.norm(x[-1:], self.w["model.norm.weight"])
        return F.linear(last, self.lm_head)

    def new_cache(self, capacity):
        shape = (capacity, self.Hkv, self.D)
        return {"n": 0, "k": [torch.empty(shape, dtype=self.dtype) for _ in range(self.L)],
                "v": [torch.empty(shape, dtype=self.dtype) for _ in range(self.L)]}


def measure(tokens, reps, fn):
    fn()  # warm-up
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        samples.append(tokens / (time.perf_counter() - t0))
    return statistics.mean(samples), (statistics.stdev(samples) if len(samples) > 1 else 0.0), samples


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-r", type=int, default=5)
    ap.add_argument("-t", type=int, default=os.cpu_count())
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="f32")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.t)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    model = Decoder(a.model_dir, dtype)
    V = model.cfg["vocab_size"]
    g = torch.Generator().manual_seed(1)
    rows = []
    if a.p > 0:
        ids = torch.randint(0, V, (a.p,), generator=g)
        rows.append((f"pp{a.p}",) + measure(a.p, a.r, lambda: model.forward(ids, model.new_cache(a.p))))
    if a.n > 0:
        ids = torch.randint(0, V, (a.n,), generator=g)

        def tg():
            cache = model.new_cache(a.n)
            for i in range(a.n):
                model.forward(ids[i : i + 1], cache)

        rows.append((f"tg{a.n}",) + measure(a.n, a.r, tg))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if a.json:
        print(json.dumps([{"backend": f"torch {torch.__version__} {a.dtype}", "threads": a.t, "test": t,
                           "avg_ts": m, "stddev_ts": s, "samples_ts": sm, "peak_rss_bytes": rss} for t, m, s, sm in rows]))
    else:
        for t, m, s, _ in rows:
            print(f"| torch {torch.__version__} {a.dtype} | {a.t} | {t} | {m:.2f} ± {s:.2f} |")
        print(f"peak RSS {rss / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
