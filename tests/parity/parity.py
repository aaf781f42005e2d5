#!/usr/bin/env python3
"""PyTorch parity check of an lnformer model: parity.py <file.safetensors>

The file comes from dump_model (tests/parity/dump_model.cpp): the parameters ("param/<name>") and
gradients ("grad/<name>") of a small Seq2Seq or LanguageModel after one forward pass and
backward(1) of the summed label-smoothed loss, the batch ("batch/..."), the logits and the loss;
the metadata names the policy, the model kind and the configuration.

This script rebuilds the same model in plain PyTorch (no fairseq), with fairseq's modules and
conventions written out: MultiheadAttention (q/k/v/out_proj, q scaled by head_dim^-0.5),
the FFN fc2(act(fc1(x))), LayerNorm (eps 1e-5), token embedding * sqrt(d) + sinusoidal positions
(fairseq's make_positions and table), the residual wiring of each policy as PAPERS.md section 1
states it, the output projection (the decoder embedding when tied, else its own weight; plus its own
bias when the config has output_bias, as nn.Linear) and fairseq's label-smoothed cross-entropy
(PAPERS.md section 5; plain cross-entropy at label smoothing 0) summed over non-padding targets. It runs in float64 (the reference) and compares, with the error
max|cpp - ref| / max|ref| per tensor (at most 1e-4): the loss, the nll, the token count, the logits
of every non-padding target position, the positions, and every gradient, name by name; the set of
parameter names must be exactly the set the architecture has, and every parameter must have a
gradient.

Exit status: 0 parity, 1 a mismatch (a table of every compared tensor is printed), 77 torch cannot
be imported (the test is skipped), 2 usage or file errors.
"""

import json
import math
import struct
import sys

TOL = 1e-4
TINY = 1e-30

try:
    import torch
    import torch.nn.functional as F
except Exception as e:  # ImportError, or a broken installation
    print(f"parity.py: SKIPPED: cannot import torch ({type(e).__name__}: {e}); install python3-torch")
    sys.exit(77)


# --- safetensors --------------------------------------------------------------------------------

DTYPES = {"F32": (torch.float32, 4), "F64": (torch.float64, 8), "I32": (torch.int32, 4), "I64": (torch.int64, 8)}


def read_safetensors(path):
    """(tensors: name -> torch tensor, metadata: dict) of a safetensors file (little-endian)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: {len(raw)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, info in header.items():
        dtype, size = DTYPES[info["dtype"]]
        b, e = info["data_offsets"]
        shape = list(info["shape"])
        numel = math.prod(shape)
        if e - b != numel * size or e > len(data):
            raise ValueError(f"{path}: tensor {name}: bad data offsets {b}, {e} for shape {shape}")
        if numel == 0:
            t = torch.empty(shape, dtype=dtype)
        else:
            t = torch.frombuffer(bytearray(data[b:e]), dtype=dtype).reshape(shape)
            if sys.byteorder != "little":
                t = t.byteswap()  # pragma: no cover
        out[name] = t
    return out, meta


# --- fairseq-style modules, functional over a parameter dictionary -------------------------------


class Params:
    """The parameters by name (float64 leaves with requires_grad); records which ones are used."""

    def __init__(self, tensors):
        self.p = {name: t.to(torch.float64).clone().requires_grad_(True) for name, t in tensors.items()}
        self.used = set()

    def __getitem__(self, name):
        if name not in self.p:
            raise KeyError(f"the architecture needs parameter '{name}', which the file does not have")
        self.used.add(name)
        return self.p[name]


def make_positions(tokens, pad):
    """fairseq.utils.make_positions: non-padding tokens count pad+1, pad+2, ...; padding gets pad."""
    mask = tokens.ne(pad).int()
    return (torch.cumsum(mask, dim=1).type_as(mask) * mask).long() + pad


def sinusoidal_table(num_embeddings, dim, pad):
    """fairseq.modules.SinusoidalPositionalEmbedding.get_embedding (in float64)."""
    half = dim // 2
    step = math.log(10000) / (half - 1)
    freq = torch.exp(torch.arange(half, dtype=torch.float64) * -step)
    ang = torch.arange(num_embeddings, dtype=torch.float64).unsqueeze(1) * freq.unsqueeze(0)
    emb = torch.cat([torch.sin(ang), torch.cos(ang)], dim=1).view(num_embeddings, -1)
    if dim % 2 == 1:
        emb = torch.cat([emb, torch.zeros(num_embeddings, 1, dtype=torch.float64)], dim=1)
    emb[pad, :] = 0
    return emb


def linear(P, prefix, x):
    return F.linear(x, P[prefix + ".weight"], P[prefix + ".bias"])


def layer_norm(P, prefix, x, eps):
    return F.layer_norm(x, (x.shape[-1],), P[prefix + ".weight"], P[prefix + ".bias"], eps)


def attention(P, prefix, query, key, heads, key_padding_mask=None, attn_mask=None):
    """fairseq MultiheadAttention (batch-first here): q = q_proj(query) * head_dim^-0.5, softmax over
    keys of q k^T + attn_mask with padded keys at -inf, then out_proj of the merged heads."""
    n, tq, d = query.shape
    tk = key.shape[1]
    dh = d // heads
    q = linear(P, prefix + ".q_proj", query) * dh ** -0.5
    k = linear(P, prefix + ".k_proj", key)
    v = linear(P, prefix + ".v_proj", key)
    q = q.view(n, tq, heads, dh).transpose(1, 2)  # [N, H, Tq, dh]
    k = k.view(n, tk, heads, dh).transpose(1, 2)
    v = v.view(n, tk, heads, dh).transpose(1, 2)
    w = torch.matmul(q, k.transpose(-1, -2))  # [N, H, Tq, Tk]
    if attn_mask is not None:
        w = w + attn_mask
    if key_padding_mask is not None:
        w = w.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
    p = torch.softmax(w, dim=-1)
    o = torch.matmul(p, v).transpose(1, 2).reshape(n, tq, d)
    return linear(P, prefix + ".out_proj", o)


def feed_forward(P, prefix, x, act):
    h = linear(P, prefix + ".fc1", x)
    h = F.relu(h) if act == "relu" else F.gelu(h)  # fairseq's gelu: the exact erf form
    return linear(P, prefix + ".fc2", h)


# --- the policies: one residual sublayer (PAPERS.md section 1) -----------------------------------


class Policy:
    """Residual wiring. `index` is the sublayer's position within its stack (0, 1, 2, ...)."""

    def __init__(self, name, cfg, kind):
        self.name = name
        self.eps = cfg["layer_norm_eps"]
        self.alpha = {}
        if name == "deepnorm":  # PAPERS.md section 2, "DeepNorm constants"
            n, m = cfg["enc_layers"], cfg["dec_layers"]
            if kind == "seq2seq":
                self.alpha = {"encoder": 0.81 * (n ** 4 * m) ** (1 / 16), "decoder": (3 * m) ** 0.25}
            else:
                self.alpha = {"decoder": (2 * m) ** 0.25}

    def residual(self, P, layer, ln_name, sub_name, stack, index, x, f):
        ln = f"{layer}.{ln_name}"
        if self.name == "post":  # x = LN(x + f(x))
            return layer_norm(P, ln, x + f(x), self.eps)
        if self.name == "pre":  # x = x + f(LN(x))
            return x + f(layer_norm(P, ln, x, self.eps))
        if self.name == "admin":  # x = LN(x * w + f(x)); the first sublayer of a stack: w = 1, frozen
            w = P[f"{layer}.{sub_name}_admin_w"] if index > 0 else 1.0
            return layer_norm(P, ln, x * w + f(x), self.eps)
        if self.name == "deepnorm":  # x = LN(alpha x + f(x))
            return layer_norm(P, ln, self.alpha[stack] * x + f(x), self.eps)
        if self.name == "rezero":  # x = x + r f(x), no LayerNorm
            return x + P[f"{layer}.{sub_name}_resweight"] * f(x)
        if self.name == "peri":  # x = x + LN_out(f(LN_in(x))) (Peri-LN, Kim et al. 2025; Sandwich-LN)
            h = f(layer_norm(P, ln, x, self.eps))
            return x + layer_norm(P, f"{layer}.{sub_name}_out_layer_norm", h, self.eps)
        raise ValueError(f"unknown policy {self.name}")

    def final(self, P, stack, x):
        """What follows the stack: a final LayerNorm for PreLN and PeriLN."""
        return layer_norm(P, f"{stack}.layer_norm", x, self.eps) if self.name in ("pre", "peri") else x


# --- the models ----------------------------------------------------------------------------------


def embed(P, cfg, name, tokens, table):
    pad = cfg["padding_idx"]
    x = math.sqrt(cfg["d_model"]) * F.embedding(tokens, P[name], padding_idx=pad)
    return x + F.embedding(make_positions(tokens, pad), table)


def encoder_stack(P, cfg, pol, stack, x, n_layers, key_padding_mask, attn_mask):
    """Layers of self-attention + FFN (the Seq2Seq encoder, or the LM's causal decoder)."""
    i = 0
    for l in range(n_layers):
        layer = f"{stack}.layers.{l}"
        x = pol.residual(P, layer, "self_attn_layer_norm", "self_attn", stack, i, x,
                         lambda h: attention(P, layer + ".self_attn", h, h, cfg["heads"], key_padding_mask, attn_mask))
        x = pol.residual(P, layer, "final_layer_norm", "ffn", stack, i + 1, x,
                         lambda h: feed_forward(P, layer, h, cfg["activation"]))
        i += 2
    return pol.final(P, stack, x)


def causal_mask(t):
    return torch.triu(torch.full((t, t), float("-inf"), dtype=torch.float64), diagonal=1)


def seq2seq_logits(P, cfg, pol, batch):
    pad = cfg["padding_idx"]
    src, prev = batch["src"], batch["prev"]
    table = sinusoidal_table(cfg["max_positions"] + pad + 1, cfg["d_model"], pad)
    enc_emb = "encoder.embed_tokens.weight"
    dec_emb = enc_emb if cfg["share_embeddings"] else "decoder.embed_tokens.weight"
    src_pad = src.eq(pad)
    mem = encoder_stack(P, cfg, pol, "encoder", embed(P, cfg, enc_emb, src, table), cfg["enc_layers"], src_pad, None)
    # fairseq's decoder self-attention: causal mask plus the key padding mask of prev_output_tokens.
    # With right padding a non-padding query never sees a padded key, so the C++ causal-only mask
    # gives the same values wherever the target is not padding (the only rows compared).
    x = embed(P, cfg, dec_emb, prev, table)
    prev_pad = prev.eq(pad)
    causal = causal_mask(prev.shape[1])
    i = 0
    for l in range(cfg["dec_layers"]):
        layer = f"decoder.layers.{l}"
        x = pol.residual(P, layer, "self_attn_layer_norm", "self_attn", "decoder", i, x,
                         lambda h: attention(P, layer + ".self_attn", h, h, cfg["heads"], prev_pad, causal))
        x = pol.residual(P, layer, "encoder_attn_layer_norm", "encoder_attn", "decoder", i + 1, x,
                         lambda h: attention(P, layer + ".encoder_attn", h, mem, cfg["heads"], src_pad, None))
        x = pol.residual(P, layer, "final_layer_norm", "ffn", "decoder", i + 2, x,
                         lambda h: feed_forward(P, layer, h, cfg["activation"]))
        i += 3
    x = pol.final(P, "decoder", x)
    return output_projection(P, cfg, dec_emb, x)


def output_projection(P, cfg, embedding, x):
    """The logits: x W^T (+ b). W is the decoder embedding when tied; b only with output_bias."""
    w = P[embedding] if cfg["tie_output"] else P["decoder.output_projection.weight"]
    b = P["decoder.output_projection.bias"] if cfg["output_bias"] else None
    return F.linear(x, w, b)


def lm_logits(P, cfg, pol, batch):
    pad = cfg["padding_idx"]
    inp = batch["input"]
    table = sinusoidal_table(cfg["max_positions"] + pad + 1, cfg["d_model"], pad)
    emb = "decoder.embed_tokens.weight"
    x = encoder_stack(P, cfg, pol, "decoder", embed(P, cfg, emb, inp, table), cfg["dec_layers"], inp.eq(pad),
                      causal_mask(inp.shape[1]))
    return output_projection(P, cfg, emb, x)


def label_smoothed_loss(logits, target, eps, pad):
    """fairseq's label_smoothed_nll_loss, reduce=True: sums over non-padding targets."""
    lprobs = torch.log_softmax(logits, dim=-1).view(-1, logits.shape[-1])
    target = target.reshape(-1, 1)
    nll = -lprobs.gather(dim=-1, index=target)
    smooth = -lprobs.sum(dim=-1, keepdim=True)
    pad_mask = target.eq(pad)
    nll = nll.masked_fill(pad_mask, 0.0).sum()
    smooth = smooth.masked_fill(pad_mask, 0.0).sum()
    eps_i = eps / (lprobs.shape[-1] - 1)
    return (1.0 - eps - eps_i) * nll + eps_i * smooth, nll


# --- the comparison ------------------------------------------------------------------------------


def rel_err(cpp, ref, scale=None):
    """max|cpp - ref| / max|ref| (or / scale when given)."""
    cpp = cpp.to(torch.float64)
    ref = ref.to(torch.float64)
    if cpp.shape != ref.shape:
        return float("inf")
    if ref.numel() == 0:
        return 0.0
    if scale is None:
        scale = ref.abs().max().item()
    return (cpp - ref).abs().max().item() / max(scale, TINY)


def main(argv):
    if len(argv) != 2:
        print("usage: parity.py <file.safetensors written by dump_model>")
        return 2
    torch.set_num_threads(2)
    tensors, meta = read_safetensors(argv[1])
    policy, kind = meta["policy"], meta["kind"]
    cfg = json.loads(meta["config"])
    pad = cfg["padding_idx"]
    batch = {k[len("batch/"):]: v.long() for k, v in tensors.items() if k.startswith("batch/")}
    params = {k[len("param/"):]: v for k, v in tensors.items() if k.startswith("param/")}
    grads = {k[len("grad/"):]: v for k, v in tensors.items() if k.startswith("grad/")}

    P = Params(params)
    pol = Policy(policy, cfg, kind)
    logits = (seq2seq_logits if kind == "seq2seq" else lm_logits)(P, cfg, pol, batch)
    target = batch["target"]
    loss, nll = label_smoothed_loss(logits, target, cfg["label_smoothing"], pad)
    loss.backward()

    rows = []  # (what, rel err or None for a structural failure, note)
    problems = []

    # The parameter set: what the architecture used must be exactly what the file holds.
    unused = sorted(set(params) - P.used)
    if unused:
        problems.append(f"{len(unused)} parameter(s) in the file that the {policy} {kind} architecture does not "
                        f"have: {', '.join(unused)}")
    missing_grads = sorted(set(params) - set(grads))
    extra_grads = sorted(set(grads) - set(params))
    if missing_grads:
        problems.append(f"parameters without a gradient in the file: {', '.join(missing_grads)}")
    if extra_grads:
        problems.append(f"gradients of unknown parameters in the file: {', '.join(extra_grads)}")

    # The batch: positions follow fairseq's make_positions.
    for ids, pos in (("src", "src_pos"), ("prev", "prev_pos"), ("input", "input_pos")):
        if ids in batch and not torch.equal(batch[pos], make_positions(batch[ids], pad)):
            problems.append(f"batch/{pos} differs from fairseq's make_positions(batch/{ids})")

    tokens = int(target.ne(pad).sum())
    if tokens != int(meta["tokens"]):
        problems.append(f"token count: C++ {meta['tokens']}, reference {tokens}")
    rows.append(("loss", rel_err(torch.tensor(float(meta["loss"])), loss.detach()), ""))
    rows.append(("nll", rel_err(torch.tensor(float(meta["nll"])), nll.detach()), ""))
    rows.append(("loss (F32 tensor)", rel_err(tensors["loss"].reshape(()), loss.detach()), ""))
    keep = target.ne(pad)  # logits at padding targets are not part of the model's output
    rows.append(("logits", rel_err(tensors["logits"][keep], logits.detach()[keep]),
                 f"{int(keep.sum())} non-padding positions"))
    def ref_grad(name):
        g = P.p[name].grad
        return torch.zeros_like(P.p[name]) if g is None else g

    for name in sorted(set(params) & set(grads)):
        ref = ref_grad(name)
        note = f"max|ref| {ref.abs().max().item():.3g}"
        scale = None
        if name.endswith(".k_proj.bias"):
            # Analytically zero: the key bias adds q . b_k to every score of a query, and softmax is
            # invariant to that shift. Both sides hold rounding noise only, so the error is measured on
            # the scale of the key weight's gradient (and the reference must be zero on that scale).
            w = name[: -len("bias")] + "weight"
            scale = ref_grad(w).abs().max().item() if w in params else 1.0
            note += f"; analytically zero, error relative to max|ref grad {w}| = {scale:.3g}"
            if ref.abs().max().item() > 1e-12 * max(scale, TINY):
                problems.append(f"the reference gradient of {name} should be zero but is {ref.abs().max().item():.3g}")
        rows.append((f"grad/{name}", rel_err(grads[name], ref, scale), note))

    bad = [r for r in rows if not (r[1] <= TOL)]
    worst = max(rows, key=lambda r: r[1])
    if bad or problems:
        print(f"parity.py: FAIL {policy} {kind} ({argv[1]})")
        for p in problems:
            print("  " + p)
        width = max(len(r[0]) for r in rows)
        print(f"  {'tensor':<{width}}  rel err     {'':4}  note")
        for what, err, note in rows:
            flag = "FAIL" if not (err <= TOL) else ""
            print(f"  {what:<{width}}  {err:10.3e}  {flag:4}  {note}")
        return 1
    print(f"parity.py: OK {policy} {kind}: loss {loss.item():.10g} (C++ {float(meta['loss']):.10g}), "
          f"logits and {len(grads)} gradients match; max rel err {worst[1]:.2e} ({worst[0]}), tolerance {TOL:g}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (OSError, ValueError, KeyError) as e:
        print(f"parity.py: FAIL: {type(e).__name__}: {e}")
        sys.exit(1)
