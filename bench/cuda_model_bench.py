#!/usr/bin/env python3
"""Whole-model throughput on the GPU: attnlab (`attnlab bench --device cuda`) vs PyTorch +
Hugging Face transformers on the same random checkpoint, in one process run.

The checkpoint is written by `attnlab make-model` (bf16, the tensor names transformers loads),
so both engines read the same weights. Tests, as llama-bench and `attnlab bench` define them:
  ppN: one forward pass over N prompt tokens (empty cache), tokens/s = N / time
  tgN: N greedy decode steps from an empty cache, one token each, the next token picked on the
       GPU (argmax), tokens/s = N / time
transformers runs eager PyTorch (no torch.compile, no CUDA graphs) with its "eager" and "sdpa"
attention implementations, bf16 weights and activations, DynamicCache. Times are medians of
-r runs after a warm-up, each bracketed by torch.cuda.synchronize().

Usage: bench/cuda_model_bench.py --attnlab BUILD/attnlab [--config bench/configs/qwen2.5-0.5b.json]
       [-p 512] [-n 128] [-r 5] [--model-dir DIR] [--json OUT]
"""
import argparse, json, os, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def attnlab_rows(binary, model_dir, p, n, r, precision):
    out = subprocess.run([binary, "bench", "-m", model_dir, "--device", "cuda", "--gpu-precision", precision,
                          "-p", str(p), "-n", str(n), "-r", str(r), "--json"],
                         check=True, capture_output=True, text=True).stdout
    rows = json.loads(out.strip().splitlines()[-1])
    return {row["test"]: statistics.median(row["samples_ts"]) for row in rows}


def torch_rows(model_dir, p, n, r, attn_impl):
    import torch
    from transformers import AutoModelForCausalLM, DynamicCache
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, attn_implementation=attn_impl)
    model = model.cuda().eval()
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, vocab, (1, p), generator=g).cuda()
    first = torch.randint(0, vocab, (1, 1), generator=g).cuda()

    def prefill():
        model(input_ids=prompt, past_key_values=DynamicCache(config=model.config), use_cache=True)

    def decode():
        cache = DynamicCache(config=model.config)
        token = first
        for _ in range(n):
            logits = model(input_ids=token, past_key_values=cache, use_cache=True).logits
            token = logits[:, -1].argmax(-1, keepdim=True)  # stays on the GPU

    def tokens_per_s(fn, tokens):
        with torch.inference_mode():
            fn()  # warm-up
            samples = []
            for _ in range(r):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                fn()
                torch.cuda.synchronize()
                samples.append(tokens / (time.perf_counter() - t0))
        return statistics.median(samples)

    rows = {f"pp{p}": tokens_per_s(prefill, p), f"tg{n}": tokens_per_s(decode, n)}
    del model
    torch.cuda.empty_cache()
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--attnlab", required=True, help="the attnlab binary (built with CUDA)")
    ap.add_argument("--config", default=os.path.join(ROOT, "bench/configs/qwen2.5-0.5b.json"))
    ap.add_argument("--model-dir", default="/tmp/attnlab-bench-model")
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-r", type=int, default=5)
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    if not os.path.exists(os.path.join(a.model_dir, "model.safetensors")):
        subprocess.run([a.attnlab, "make-model", "--config", a.config, "--out", a.model_dir, "--dtype", "bf16",
                        "--seed", "1"], check=True)
    results = {
        "attnlab bf16": attnlab_rows(a.attnlab, a.model_dir, a.p, a.n, a.r, "bf16"),
        "attnlab f32": attnlab_rows(a.attnlab, a.model_dir, a.p, a.n, a.r, "f32"),
    }
    for impl in ("eager", "sdpa"):
        try:
            results[f"transformers {impl}"] = torch_rows(a.model_dir, a.p, a.n, a.r, impl)
        except Exception as e:  # reported, not fatal: the attnlab rows still print
            print(f"# transformers {impl}: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
    pp, tg = f"pp{a.p}", f"tg{a.n}"
    ref = results.get("transformers eager")
    print(f"model {os.path.basename(a.config)} (random bf16 weights), median of {a.r} runs")
    print(f"| engine | {pp} t/s | {tg} t/s | {pp} / transformers eager | {tg} / transformers eager |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, rows in results.items():
        ratio = lambda k: f"{rows[k] / ref[k]:.2f}x" if ref else "-"
        print(f"| {name} | {rows[pp]:.1f} | {rows[tg]:.1f} | {ratio(pp)} | {ratio(tg)} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
