"""Token pruning for vision-language and video models (HiPrune, FlowCut, ZipVL style).

A model of `layers` transformer layers runs its first `prune_layer` layers on all seq tokens; a
pruning pass then scores the prunable tokens, keeps the top `keep` fraction of them, and
gathers the kept hidden states, so the remaining layers attend over fewer tokens:

    layer   0 .. prune_layer-1          pass                 prune_layer .. layers-1
            attention on N tokens  ->  score, top-k, gather  ->  attention on K tokens
                                                                 K = text + round(keep x (N - text))

The shape fields are the attention layer's: batch, heads, kv_heads, seq (= seq_q = seq_kv = N,
a prefill), head_dim, value_dim; mask 'full' (a vision encoder) or 'causal' (the language
model). The last `text_tokens` tokens (the prompt) are never pruned; kept tokens keep their
order, so a causal mask on the kept tokens is the causal mask of the full sequence restricted
to them. Only attention and the pass are costed: the MLPs and projections of the layers are not
part of this family.

Scoring (`score`), one scheme per paper:
    attention    importance = attention a token receives from `probes` query rows, softmax over
                 all keys, averaged over heads and probes. FlowCut: the [CLS] token's attention
                 (probes = 1); ZipVL: the normalized attention scores of probe tokens (a few);
                 HiPrune: attention received in an object-centric middle layer of the vision
                 encoder, averaged over all queries (probes = seq).
    similarity   importance = mean cosine similarity of a token's hidden state to `probes`
                 reference tokens: HiPrune++'s prompt-aware variant (similarity to the text
                 tokens); FlowCut's semantic-relevance criterion is of this kind too.
keep = 1 prunes nothing: the pass is skipped (a pruning framework does not run it).
prune_layer = 0 prunes before the first layer (e.g. between the vision encoder and the LLM).
"""
from __future__ import annotations

import numpy as np

from attnsim.spec.schema import Field
from attnsim.workload.cascade import Cascade, Einsum
from attnsim.workload.families import Family

PARAMS = (
    Field("layers", "int", required=False, default=32, min=1, help="transformer layers of the model"),
    Field("prune_layer", "int", required=False, default=2, min=0,
          help="layers that run at full length before the pruning pass (0 = prune before the first)"),
    Field("keep", "fraction", required=False, default=0.25, help="fraction of the prunable tokens kept"),
    Field("score", "enum", required=False, default="attention", choices=("attention", "similarity"),
          help="attention: attention received from probe rows (FlowCut, ZipVL, HiPrune); "
               "similarity: cosine similarity to reference tokens (HiPrune++)"),
    Field("probes", "int", required=False, default=1, min=1,
          help="query rows (attention) or reference tokens (similarity) that score the tokens; 1 = [CLS]"),
    Field("text_tokens", "int", required=False, default=0, min=0,
          help="last tokens never pruned (the text prompt)"),
    Field("hidden", "int", required=False, default=0, min=0,
          help="hidden width of the gathered states (and of the similarity); 0 = heads x head_dim"),
)


# ---------------------------------------------------------------------------- counts


def hidden_width(w) -> int:
    return w.param("hidden") or w.heads * w.head_dim


def prunable(w) -> int:
    """T: tokens the pass scores (all but the text tokens)."""
    return w.seq_q - w.param("text_tokens")


def kept_prunable(w) -> int:
    """Kept prunable tokens: keep x T rounded to the nearest token (halves up), at least one."""
    return max(1, int(w.param("keep") * prunable(w) + 0.5))


def kept_tokens(w) -> int:
    """K: tokens the later layers attend over."""
    return w.param("text_tokens") + kept_prunable(w)


def prunes(w) -> bool:
    """Whether the pass runs (keep < 1)."""
    return w.param("keep") < 1.0


def allowed_pairs(n: int, causal: bool) -> int:
    """(m, n) pairs of n tokens: n (n + 1) / 2 under the causal mask, n^2 otherwise."""
    return n * (n + 1) // 2 if causal else n * n


# ---------------------------------------------------------------------------- references (float64)


def attention_scores(q_probe, k):
    """Attention each key receives: softmax(q k^T / sqrt(D)) over all keys, averaged over heads
    and probe rows.  q_probe [B, H, P, D], k [B, Hkv, N, D] -> scores [B, N]."""
    q_probe, k = np.asarray(q_probe, dtype=np.float64), np.asarray(k, dtype=np.float64)
    g = q_probe.shape[1] // k.shape[1]
    kk = np.repeat(k, g, axis=1)  # [B, H, N, D]
    s = np.einsum("bhpd,bhnd->bhpn", q_probe, kk) / np.sqrt(q_probe.shape[-1])
    s = np.exp(s - s.max(axis=-1, keepdims=True))
    return (s / s.sum(axis=-1, keepdims=True)).mean(axis=(1, 2))


def similarity_scores(x, ref):
    """Mean cosine similarity of each token to the reference tokens.  x [B, N, E], ref [B, P, E] -> [B, N]."""
    x, ref = np.asarray(x, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    xn = x / np.linalg.norm(x, axis=-1, keepdims=True)
    rn = ref / np.linalg.norm(ref, axis=-1, keepdims=True)
    return np.einsum("bne,bpe->bnp", xn, rn).mean(axis=-1)


def select_tokens(scores, n_keep_prunable: int, text_tokens: int):
    """Indices of the kept tokens, in sequence order: the top n_keep_prunable scores among the
    first N - text_tokens tokens, then every text token.  scores [B, N] -> idx [B, K]."""
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.shape[1]
    t = n - text_tokens
    top = np.argsort(-scores[:, :t], axis=1, kind="stable")[:, :n_keep_prunable]  # [B, k]
    text = np.broadcast_to(np.arange(t, n), (scores.shape[0], text_tokens))
    return np.sort(np.concatenate([top, text], axis=1), axis=1)


def gather_tokens(x, idx):
    """Kept hidden states.  x [B, N, E], idx [B, K] -> [B, K, E]."""
    return np.take_along_axis(np.asarray(x), np.asarray(idx)[:, :, None], axis=1)


def keep_mask(idx, n: int):
    """[B, N] bool: True for kept tokens."""
    m = np.zeros((idx.shape[0], n), dtype=bool)
    np.put_along_axis(m, idx, True, axis=1)
    return m


# ---------------------------------------------------------------------------- cascade


def extents(w) -> dict[str, int]:
    """Rank extents of the cascade.

    b h g m n d f   as in the softmax cascade, at the full length N (layers before the pass)
    l  layers before the pass (prune_layer);  r  layers after it (layers - prune_layer)
    s  allowed (m, n) pairs among the K kept tokens (K(K+1)/2 causal, K^2 full) per (b, h)
    p  probes;  t  prunable tokens;  e  hidden width"""
    k = kept_tokens(w) if prunes(w) else w.seq_q
    return {"b": w.batch, "h": w.heads, "g": w.group, "m": w.seq_q, "n": w.seq_kv, "d": w.head_dim,
            "f": w.value_dim, "l": w.param("prune_layer"), "r": w.param("layers") - w.param("prune_layer"),
            "s": allowed_pairs(k, w.mask.is_causal), "p": w.param("probes"), "t": prunable(w),
            "e": hidden_width(w)}


def cascade(w) -> Cascade:
    """Attention of every layer, and the pass.

    layers before:  the softmax cascade over (l, b, h, m, n), masked     2 FLOP per (m,n,d) and (m,n,f)
    layers after:   the same over (r, b, h, s) (s = kept pairs)          2 FLOP per (s,d) and (s,f)
    score, attention:   S[b,h,p,n] = Qp[b,h,p,d] K[b,h/g,n,d]           2 FLOP per (b,h,p,n,d) (mma)
                        softmax over n, mean over h, p                   1 exp + 5 ops per (b,h,p,n)
    score, similarity:  |x[b,n]|, |ref[b,p]|                             1 FMA per (b,n,e) and (b,p,e)
                        R[b,t,p] = x[b,t,e] ref[b,p,e]                  2 FLOP per (b,t,p,e)   (mma)
                        scale by the norms, mean over p                  2 ops per (b,t,p)
    select:             top-k of T scores                                1 op per (b,t)
    The gather moves data only."""
    full = (("S", "S[l,b,h,m,n] = Q[l,b,h,m,d] * K[l,b,h/g,n,d]", "mma", ("d",), 2),
            ("X", "X[l,b,h,m] = max_n S", "vector", (), 1),
            ("E", "E[l,b,h,m,n] = exp(S*scale - X)", "exp", (), 1),
            ("Es", "(scale and subtract: one FMA per element)", "vector", (), 1),
            ("L", "L[l,b,h,m] = sum_n E", "vector", (), 1),
            ("O", "O[l,b,h,m,f] = E * V[l,b,h/g,n,f] / L", "mma", ("f",), 2))
    kept = (("S'", "S'[r,b,h,(i,j)] = Q'[r,b,h,i,d] * K'[r,b,h/g,j,d]  (kept tokens i, j)", "mma", ("d",), 2),
            ("X'", "X'[r,b,h,i] = max_j S'", "vector", (), 1),
            ("E'", "E'[r,b,h,(i,j)] = exp(S'*scale - X')", "exp", (), 1),
            ("Es'", "(scale and subtract: one FMA per element)", "vector", (), 1),
            ("L'", "L'[r,b,h,i] = sum_j E'", "vector", (), 1),
            ("O'", "O'[r,b,h,i,f] = E' * V'[r,b,h/g,j,f] / L'", "mma", ("f",), 2))
    steps = [Einsum(nm, ex, op, ("l", "b", "h", "m", "n") + extra, per, True) for nm, ex, op, extra, per in full]
    steps += [Einsum(nm, ex, op, ("r", "b", "h", "s") + extra, per, False) for nm, ex, op, extra, per in kept]
    if prunes(w):
        if w.param("score") == "attention":
            steps += [Einsum("Sp", "Sp[b,h,p,n] = Qp[b,h,p,d] * K[b,h/g,n,d]", "mma", ("b", "h", "p", "n", "d"), 2, False),
                      Einsum("Ep", "exp(Sp*scale - max_n Sp)", "exp", ("b", "h", "p", "n"), 1, False),
                      Einsum("Pp", "max, scale, sum, normalize, mean over h and p", "vector", ("b", "h", "p", "n"), 5, False)]
        else:
            steps += [Einsum("nx", "|x[b,n,:]|^2", "vector", ("b", "n", "e"), 1, False),
                      Einsum("nr", "|ref[b,p,:]|^2", "vector", ("b", "p", "e"), 1, False),
                      Einsum("R", "R[b,t,p] = x[b,t,e] * ref[b,p,e]", "mma", ("b", "t", "p", "e"), 2, False),
                      Einsum("Rs", "R / (|x| |ref|), mean over p", "vector", ("b", "t", "p"), 2, False)]
        steps.append(Einsum("top", "idx[b,:] = topk_t(score[b,t])", "vector", ("b", "t"), 1, False))
    return Cascade(tuple(steps))


def cascade_ops(w) -> dict[str, float]:
    return cascade(w).ops(extents(w), allowed_pairs=allowed_pairs(w.seq_q, w.mask.is_causal))


# ---------------------------------------------------------------------------- checks


def _check(w) -> list[tuple[str, str]]:
    probs = []
    if w.seq_q != w.seq_kv:
        probs.append(("seq_q", f"token_prune shortens a prefill: seq_q must equal seq_kv, got seq_q={w.seq_q}, "
                               f"seq_kv={w.seq_kv}"))
    if w.mask.kind not in ("full", "causal"):
        probs.append(("mask.kind", f"token_prune keeps tokens by content, which a {w.mask.kind!r} mask's geometry "
                                   "does not survive: expected 'full' or 'causal'"))
    if w.kv_page:
        probs.append(("kv_page", f"token_prune models a prefill without a paged cache: expected 0, got {w.kv_page}"))
    layers, pl = w.param("layers"), w.param("prune_layer")
    if pl >= layers:
        probs.append(("params.prune_layer", f"expected a layer before the last (0 .. {layers - 1}): pruning after "
                                            f"layer {layers} shortens nothing, got prune_layer={pl}"))
    text = w.param("text_tokens")
    if text >= w.seq_q:
        probs.append(("params.text_tokens", f"expected fewer text tokens than seq ({w.seq_q}) so some tokens can be "
                                            f"pruned, got {text}"))
    if w.param("probes") > w.seq_q:
        probs.append(("params.probes", f"expected at most seq ({w.seq_q}) probe rows, got {w.param('probes')}"))
    return probs


def _unpruned(w):
    """The same model with nothing pruned (keep = 1: every layer at full length, no pass)."""
    from dataclasses import replace
    from attnsim.workload.spec import resolve_params
    return replace(w, name="", params=resolve_params("token_prune", {**w.params.as_dict(), "keep": 1.0}))


FAMILIES = {
    "token_prune": Family("token_prune", "a token-pruning pass that shortens the later layers (HiPrune, FlowCut, ZipVL)",
                          PARAMS, cascade, _check, baseline=_unpruned),
}
