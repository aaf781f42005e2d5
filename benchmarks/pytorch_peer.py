#!/usr/bin/env python3
"""PyTorch's side of benchmarks/pytorch_peer.sh: the Seq2Seq that bench_policy_matrix trains, written
the way a PyTorch user would (torch.nn.Transformer, norm_first for Pre-LN), trained on random batches
of the same shape with Adam (beta2 0.98), label smoothing 0.1, dropout 0.1 and clipping at 1.

    OMP_NUM_THREADS=2 /usr/bin/python3 benchmarks/pytorch_peer.py --norm pre --layers 6 --d-model 512 \
        --ffn 1024 --heads 4 --vocab 8000 --sentences 128 --src-len 32 --tgt-len 32 --steps 3

--autocast bf16 runs the forward pass and the loss under torch.autocast("cpu", dtype=torch.bfloat16)
(PyTorch's CPU mixed precision: matmuls in bf16, f32 master weights).

Prints one JSON line: ms per step (median of the timed steps), target tokens/s, peak RSS (MiB), the
last loss, torch's version, thread count and BLAS. Exit 77 when torch cannot be imported.
"""

import argparse
import json
import math
import os
import resource
import sys
import time

try:
    import torch
    import torch.nn as nn
except Exception as e:  # ImportError, or a broken installation
    print(f"pytorch_peer.py: cannot import torch ({type(e).__name__}: {e}); install python3-torch", file=sys.stderr)
    sys.exit(77)


class Seq2Seq(nn.Module):
    """Shared, tied embeddings scaled by sqrt(d) plus sinusoidal positions; nn.Transformer between."""

    def __init__(self, a):
        super().__init__()
        self.d = a.d_model
        self.embed = nn.Embedding(a.vocab, a.d_model, padding_idx=1)
        nn.init.normal_(self.embed.weight, std=a.d_model ** -0.5)
        self.core = nn.Transformer(d_model=a.d_model, nhead=a.heads, num_encoder_layers=a.layers,
                                   num_decoder_layers=a.layers, dim_feedforward=a.ffn, dropout=a.dropout,
                                   batch_first=True, norm_first=(a.norm == "pre"))
        n = max(a.src_len, a.tgt_len) + 8
        pos = torch.arange(n).unsqueeze(1)
        inv = torch.exp(torch.arange(0, a.d_model, 2) * (-math.log(10000.0) / a.d_model))
        table = torch.zeros(n, a.d_model)
        table[:, 0::2] = torch.sin(pos * inv)
        table[:, 1::2] = torch.cos(pos * inv)
        self.register_buffer("positions", table)
        self.drop = nn.Dropout(a.dropout)

    def embed_tokens(self, x):
        return self.drop(self.embed(x) * math.sqrt(self.d) + self.positions[: x.size(1)])

    def forward(self, src, prev):
        causal = self.core.generate_square_subsequent_mask(prev.size(1))
        h = self.core(self.embed_tokens(src), self.embed_tokens(prev), tgt_mask=causal)
        return h @ self.embed.weight.t()  # tied output projection


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--norm", choices=["pre", "post"], default="pre")
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--ffn", type=int, default=1024)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--sentences", type=int, default=128)
    p.add_argument("--src-len", type=int, default=32)
    p.add_argument("--tgt-len", type=int, default=32)
    p.add_argument("--warm-steps", type=int, default=1)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--autocast", choices=["none", "bf16"], default="none",
                   help="bf16: forward and loss under torch.autocast (CPU, bfloat16)")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = Seq2Seq(a)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, betas=(0.9, 0.98), eps=1e-8)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1, reduction="sum")
    g = torch.Generator().manual_seed(a.seed)
    batches = []
    for _ in range(4):
        src = torch.randint(4, a.vocab, (a.sentences, a.src_len), generator=g)
        tgt = torch.randint(4, a.vocab, (a.sentences, a.tgt_len), generator=g)
        prev = torch.cat([torch.full((a.sentences, 1), 2), tgt[:, :-1]], dim=1)
        batches.append((src, prev, tgt))

    times, loss = [], float("nan")
    for i in range(a.warm_steps + a.steps):
        src, prev, tgt = batches[i % len(batches)]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=(a.autocast == "bf16")):
            logits = model(src, prev)
            total = loss_fn(logits.reshape(-1, a.vocab), tgt.reshape(-1))
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        loss = total.item() / tgt.numel()
        if i >= a.warm_steps:
            times.append(dt)
    times.sort()
    ms = 1e3 * times[len(times) // 2]
    # Debian's torch says BLAS_INFO=generic: it calls libblas.so.3, whichever library the
    # alternatives system points that at (OpenBLAS with libopenblas0-openmp installed).
    blas = "unknown"
    try:
        cfg = torch.__config__.show()
        if "BLAS_INFO=" in cfg:
            blas = cfg.split("BLAS_INFO=")[1].split(",")[0]
        lib = "/usr/lib/x86_64-linux-gnu/libblas.so.3"
        if blas == "generic" and os.path.exists(lib):
            blas = f"generic -> {os.path.realpath(lib)}"
    except Exception:
        pass
    print(json.dumps({
        "framework": "pytorch", "version": torch.__version__, "threads": torch.get_num_threads(), "blas": blas,
        "norm": a.norm, "autocast": a.autocast, "ms_per_step": ms, "target_tokens_per_s": a.sentences * a.tgt_len / (ms / 1e3),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "loss": loss,
        "parameters": sum(p.numel() for p in model.parameters()),
    }))


if __name__ == "__main__":
    main()
