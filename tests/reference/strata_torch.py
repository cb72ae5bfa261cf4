"""strata_torch.py: the Strata decoder written again in PyTorch, from the same parameter names and the same
formulas, for the float64 reference tests (torch_ref.py) and the PyTorch side of bench/bench_vs_torch.py.

Rows are tokens and weights multiply on the right (x @ w), exactly as in Strata's C++ model.
"""
import math

import torch
import torch.nn.functional as F

PLACEMENTS = ("post", "res_post", "pre", "peri", "deepnorm", "mix")


def mix_post_blocks(cfg):
    """Post-norm blocks of mix: floor(f * L), with Strata's 1e-9 so that 0.29 * 100 gives 29."""
    return math.floor(cfg.get("mix_post_fraction", 0.25) * cfg["layers"] + 1e-9)


def norm_flags(cfg, block):
    """(ln_in, ln_branch, ln_sum, alpha) of a sub-layer: u = LN_in(x)?, g = LN_branch(F(u))?, y = LN_sum(a*x + g)?"""
    n = cfg["norm"]
    if n == "post":
        return False, False, True, 1.0
    if n == "res_post":
        return False, True, False, 1.0
    if n == "pre":
        return True, False, False, 1.0
    if n == "peri":
        return True, True, False, 1.0
    if n == "deepnorm":
        return False, False, True, (2.0 * cfg["layers"]) ** 0.25
    if n == "mix":
        post = block < mix_post_blocks(cfg)
        return not post, False, post, 1.0
    raise ValueError(f"unknown norm {n}")


def has_final_norm(cfg):
    return cfg["norm"] in ("pre", "res_post", "peri", "mix")


def param_shapes(cfg):
    """Ordered {name: shape}, the names of the HDF5 checkpoint below /model."""
    d, f, V, T = cfg["d_model"], cfg["d_ffn"], cfg["vocab"], cfg["seq_len"]
    s = {"tok_embedding": (V, d), "pos_embedding": (T, d)}
    for b in range(cfg["layers"]):
        ln_in, ln_branch, ln_sum, _ = norm_flags(cfg, b)
        for sub in ("attn", "ffn"):
            p = f"blocks/{b:03d}/{sub}/"
            if ln_in:
                s[p + "ln_in/gain"] = (d,)
                s[p + "ln_in/bias"] = (d,)
            if sub == "attn":
                s[p + "w_qkv"], s[p + "b_qkv"], s[p + "w_o"], s[p + "b_o"] = (d, 3 * d), (3 * d,), (d, d), (d,)
            else:
                s[p + "w_h"], s[p + "b_h"], s[p + "w_f"], s[p + "b_f"] = (d, f), (f,), (f, d), (d,)
            if ln_branch or ln_sum:
                s[p + "ln_out/gain"] = (d,)
                s[p + "ln_out/bias"] = (d,)
    if has_final_norm(cfg):
        s["final_norm/gain"] = (d,)
        s["final_norm/bias"] = (d,)
    s["lm_head/w"] = (d, V)
    return s


def activation(x, name):
    if name == "gelu_tanh":
        return F.gelu(x, approximate="tanh")
    if name == "gelu":
        return F.gelu(x)
    if name == "relu":
        return F.relu(x)
    raise ValueError(name)


def attention(u, w_qkv, b_qkv, w_o, b_o, H):
    B, T, C = u.shape
    hs = C // H
    qkv = u @ w_qkv + b_qkv                                   # [B,T,3C]
    q, k, v = qkv.split(C, dim=-1)                            # [B,T,C] each
    q = q.view(B, T, H, hs).transpose(1, 2)                   # [B,H,T,hs]
    k = k.view(B, T, H, hs).transpose(1, 2)
    v = v.view(B, T, H, hs).transpose(1, 2)
    att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)           # [B,H,T,T]
    mask = torch.ones(T, T, dtype=torch.bool, device=u.device).tril()
    att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
    y = (att @ v).transpose(1, 2).reshape(B, T, C)            # heads concatenated [B,T,C]
    return y @ w_o + b_o                                      # [B,T,C]


def ffn(u, w_h, b_h, w_f, b_f, act):
    return activation(u @ w_h + b_h, act) @ w_f + b_f         # [B,T,d] -> [B,T,d_ffn] -> [B,T,d]


def forward(cfg, P, tokens, targets):
    """Mean next-token cross-entropy. P maps names to tensors; tokens, targets: [B,T] int64."""
    d, eps = cfg["d_model"], cfg.get("ln_eps", 1e-5)
    B, T = tokens.shape
    x = P["tok_embedding"][tokens] + P["pos_embedding"][:T]
    ln = lambda t, name: F.layer_norm(t, (d,), P[name + "/gain"], P[name + "/bias"], eps)
    for b in range(cfg["layers"]):
        ln_in, ln_branch, ln_sum, alpha = norm_flags(cfg, b)
        for sub in ("attn", "ffn"):
            p = f"blocks/{b:03d}/{sub}/"
            u = ln(x, p + "ln_in") if ln_in else x
            if sub == "attn":
                f = attention(u, P[p + "w_qkv"], P[p + "b_qkv"], P[p + "w_o"], P[p + "b_o"], cfg["heads"])
            else:
                f = ffn(u, P[p + "w_h"], P[p + "b_h"], P[p + "w_f"], P[p + "b_f"], cfg["activation"])
            g = ln(f, p + "ln_out") if ln_branch else f
            s = alpha * x + g
            x = ln(s, p + "ln_out") if ln_sum else s
    if has_final_norm(cfg):
        x = ln(x, "final_norm")
    logits = x @ P["lm_head/w"]                               # [B,T,V]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def init_scheme(cfg):
    """init.scheme, "" resolved as Strata does: deepnet for deepnorm, else gpt2."""
    return cfg.get("init_scheme", "") or ("deepnet" if cfg["norm"] == "deepnorm" else "gpt2")


def init_params(cfg, generator=None, dtype=torch.float32):
    """Strata's init in distribution (src/model/init.cpp): embeddings normal(init_std); matrices normal(init_std)
    (gpt2: w_o, w_f / sqrt(2L)) or Xavier-normal (deepnet: beta on w_h, w_f, w_o and the v columns of w_qkv)."""
    L, d = cfg["layers"], cfg["d_model"]
    scheme = init_scheme(cfg)
    beta = (8.0 * L) ** -0.25 if scheme == "deepnet" else 1.0
    P = {}
    for name, shape in param_shapes(cfg).items():
        if name.endswith("/gain"):
            t = torch.ones(shape, dtype=dtype)
        elif len(shape) == 1:
            t = torch.zeros(shape, dtype=dtype)
        else:
            xavier = scheme in ("xavier", "deepnet") and not name.endswith("_embedding")
            std = math.sqrt(2.0 / (shape[0] + shape[1])) if xavier else cfg.get("init_std", 0.02)
            t = torch.randn(shape, generator=generator, dtype=dtype) * std
            out_proj = name.endswith("/w_o") or name.endswith("/w_f")
            if out_proj and scheme == "gpt2":
                t /= math.sqrt(2 * L)
            if out_proj or name.endswith("/w_h"):
                t *= beta
            if name.endswith("/w_qkv"):
                t[:, 2 * d:] *= beta
        P[name] = t
    return P
