#!/usr/bin/env python3
"""Expected values for the torch.optim parity test of tests/optim/test_optim.cpp.

For each optimizer case (SGD with momentum + Nesterov + weight decay, SGD with dampening, Adam with
weight decay, AdamW, RAdam) it runs torch.optim on a few small parameters, one of which is in a
no-decay param group (weight_decay = 0, as lnformer gives parameters with decay = false), feeding a
fixed sequence of gradients and a per-step learning rate, and records the parameter values after
every step. It also records torch.nn.utils.clip_grad_norm_ on fixed gradients.

Every input is float32-exact: hyperparameters and learning rates are rounded to float32 before torch
sees them (lnformer's configuration and schedules are float), gradients and initial values come from
a fixed integer generator, not from torch's RNG, so they do not depend on the torch version.

    /usr/bin/python3 tests/optim/gen_torch_optim.py --out tests/optim/torch_optim.json   # regenerate
    /usr/bin/python3 tests/optim/gen_torch_optim.py --check tests/optim/torch_optim.json # ctest: optim_torch_data

--check regenerates in memory and compares with the file: inputs must be identical, outputs equal
within the tolerance test_optim.cpp uses. Exit status 77 (ctest's skip) when torch is missing.
"""
import argparse
import json
import math
import struct
import sys

try:
    import torch
except ImportError:
    print("torch is not installed: skipped")
    sys.exit(77)

STEPS = 8  # RAdam with beta2 = 0.98 rectifies from step 6 on: both of its branches are exercised

# Parameters: name, shape, decay (biases and LayerNorm gains are no-decay in lnformer).
PARAMS = [
    ("layers.0.fc1.weight", [3, 4], True),
    ("layers.0.fc1.bias", [4], False),
    ("layers.0.final_layer_norm.weight", [5], False),
    ("embed_tokens.weight", [2, 3, 2], True),
]

CASES = [
    ("sgd_nesterov", "sgd", dict(momentum=0.9, dampening=0.0, nesterov=True, weight_decay=1e-2)),
    ("sgd_dampening", "sgd", dict(momentum=0.8, dampening=0.25, nesterov=False, weight_decay=1e-3)),
    ("sgd_plain", "sgd", dict(momentum=0.0, dampening=0.0, nesterov=False, weight_decay=1e-2)),
    ("adam", "adam", dict(beta1=0.9, beta2=0.98, eps=1e-8, weight_decay=1e-2)),
    ("adamw", "adamw", dict(beta1=0.9, beta2=0.98, eps=1e-6, weight_decay=0.1)),
    ("radam", "radam", dict(beta1=0.9, beta2=0.98, eps=1e-8, weight_decay=1e-2)),
]

# Tolerance of the comparison (kept in sync with test_optim.cpp): |a - b| <= RTOL |b| + ATOL.
RTOL = 1e-6
ATOL = 1e-6


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


class Lcg:
    """A 64-bit LCG (Knuth's MMIX constants): the same numbers on every machine and torch version."""

    def __init__(self, seed):
        self.state = (seed * 6364136223846793005 + 1442695040888963407) % 2**64

    def uniform(self, lo, hi):
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) % 2**64
        u = (self.state >> 40) / float(1 << 24)  # 24 random bits: exact in float32
        return f32(lo + (hi - lo) * u)


def numel(shape):
    return math.prod(shape)


def inputs(seed):
    rng = Lcg(seed)
    init = [[rng.uniform(-1.0, 1.0) for _ in range(numel(s))] for _, s, _ in PARAMS]
    # Gradient magnitudes vary by step (1e-4 .. 10) so that eps and the moments' history matter;
    # a few exact zeros check the handling of v = 0.
    scales = [1.0, 0.1, 10.0, 1e-4, 1.0, 3.0, 0.01, 1.0]
    grads = []
    for t in range(STEPS):
        step = []
        for k, (_, s, _) in enumerate(PARAMS):
            g = [f32(rng.uniform(-1.0, 1.0) * scales[t]) for _ in range(numel(s))]
            if t == 0 and k == 0:
                g[1] = 0.0
            step.append(g)
        grads.append(step)
    # A warm-up-then-decay learning rate, float32-exact.
    lrs = [f32(0.05 * min(t / 3.0, math.sqrt(3.0 / t))) for t in range(1, STEPS + 1)]
    return init, grads, lrs


def make_optimizer(kind, cfg, decay, no_decay):
    wd = f32(cfg["weight_decay"])
    groups = [dict(params=decay, weight_decay=wd), dict(params=no_decay, weight_decay=0.0)]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=0.0, momentum=f32(cfg["momentum"]), dampening=f32(cfg["dampening"]),
                               nesterov=cfg["nesterov"])
    betas = (f32(cfg["beta1"]), f32(cfg["beta2"]))
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "radam": torch.optim.RAdam}[kind]
    return cls(groups, lr=0.0, betas=betas, eps=f32(cfg["eps"]))


def run_case(index, name, kind, cfg):
    init, grads, lrs = inputs(1000 + index)
    params = [torch.tensor(v, dtype=torch.float32).reshape(s).requires_grad_() for v, (_, s, _) in zip(init, PARAMS)]
    decay = [p for p, (_, _, d) in zip(params, PARAMS) if d]
    no_decay = [p for p, (_, _, d) in zip(params, PARAMS) if not d]
    opt = make_optimizer(kind, cfg, decay, no_decay)
    expected = []
    for t in range(STEPS):
        for p, g in zip(params, grads[t]):
            p.grad = torch.tensor(g, dtype=torch.float32).reshape(p.shape)
        for group in opt.param_groups:
            group["lr"] = lrs[t]
        opt.step()
        expected.append([p.detach().reshape(-1).tolist() for p in params])
    return {
        "name": name,
        "optimizer": kind,
        "config": cfg,
        "params": [{"name": n, "shape": s, "decay": d, "init": v} for (n, s, d), v in zip(PARAMS, init)],
        "lrs": lrs,
        "grads": grads,
        "expected": expected,
    }


def run_clip(index, max_norm):
    rng = Lcg(2000 + index)
    grads = [[f32(rng.uniform(-1.0, 1.0) * 2.0) for _ in range(numel(s))] for _, s, _ in PARAMS]
    params = [torch.zeros(s, requires_grad=True) for _, s, _ in PARAMS]
    for p, g in zip(params, grads):
        p.grad = torch.tensor(g, dtype=torch.float32).reshape(p.shape)
    norm = torch.nn.utils.clip_grad_norm_(params, f32(max_norm))
    return {
        "max_norm": f32(max_norm),
        "grads": grads,
        "norm": float(norm),
        "clipped": [p.grad.reshape(-1).tolist() for p in params],
    }


def generate():
    return {
        "generator": "tests/optim/gen_torch_optim.py",
        "torch_version": torch.__version__,
        "steps": STEPS,
        "cases": [run_case(i, *c) for i, c in enumerate(CASES)],
        "clip": [run_clip(0, 1.0), run_clip(1, 100.0), run_clip(2, 6.0)],  # clips hard, not at all, a little
    }


def dumps(x, indent=0):
    """JSON with lists of numbers on one line (readable diffs, small file)."""
    pad = " " * indent
    if isinstance(x, dict):
        items = [f'{pad} {json.dumps(k)}: {dumps(v, indent + 1).lstrip()}' for k, v in x.items()]
        return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(x, list) and all(not isinstance(v, (list, dict)) for v in x):
        return pad + "[" + ", ".join(json.dumps(v) for v in x) + "]"
    if isinstance(x, list):
        return pad + "[\n" + ",\n".join(dumps(v, indent + 1) for v in x) + "\n" + pad + "]"
    return pad + json.dumps(x)


OUTPUT_KEYS = {"expected", "norm", "clipped", "torch_version"}


def compare(fresh, stored, path="$"):
    """Problems found comparing regenerated data with the stored file (outputs within tolerance)."""
    out = []
    tolerant = any(f".{k}" in path for k in OUTPUT_KEYS)
    if isinstance(fresh, dict) and isinstance(stored, dict):
        if set(fresh) != set(stored):
            return [f"{path}: keys {sorted(stored)} in the file, {sorted(fresh)} generated"]
        for k in fresh:
            if k == "torch_version":
                continue
            out += compare(fresh[k], stored[k], f"{path}.{k}")
    elif isinstance(fresh, list) and isinstance(stored, list):
        if len(fresh) != len(stored):
            return [f"{path}: {len(stored)} entries in the file, {len(fresh)} generated"]
        for i, (a, b) in enumerate(zip(fresh, stored)):
            out += compare(a, b, f"{path}[{i}]")
    elif tolerant and isinstance(fresh, float) and isinstance(stored, (int, float)):
        if not abs(fresh - stored) <= RTOL * abs(stored) + ATOL:
            out.append(f"{path}: {stored!r} in the file, {fresh!r} generated")
    elif fresh != stored or type(fresh) != type(stored):
        out.append(f"{path}: {stored!r} in the file, {fresh!r} generated")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", help="write the expected values to this file")
    g.add_argument("--check", help="regenerate and compare with this file")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = generate()
    if args.out:
        with open(args.out, "w") as f:
            f.write(dumps(data) + "\n")
        return 0
    with open(args.check) as f:
        stored = json.load(f)
    problems = compare(data, stored)
    if problems:
        print(f"{args.check} is out of date with {sys.argv[0]} (torch {torch.__version__}); {len(problems)} "
              f"difference(s), first ones:")
        for p in problems[:10]:
            print("  " + p)
        print(f"regenerate: /usr/bin/python3 {sys.argv[0]} --out {args.check}")
        return 1
    print(f"{args.check} matches torch {torch.__version__} ({len(data['cases'])} optimizer cases, "
          f"{len(data['clip'])} clipping cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
