"""Run one forward pass of a PyTorch model and record every attention call and GEMM.

    cap = capture(model, *example_inputs)        # tensors on the meta device: no memory, no math
    cap.distinct_attention()                     # identical calls grouped, with counts

A ``TorchFunctionMode`` sees each call at the level of torch's Python API:

    F.scaled_dot_product_attention     shapes, GQA (K/V heads), is_causal, attn_mask, dropout, scale
    flex_attention                     the FlexAttention higher-order op: shapes, its BlockMask, score_mod
    matmul / bmm / einsum ... softmax  a product whose output goes (through elementwise ops: scale,
      ... matmul                       mask add / masked_fill / where, dropout) into a softmax over
                                       its last dim and then into a product with V
    F.multi_head_attention_forward     nn.MultiheadAttention: its projections and attention
    F.linear, matmul, bmm, mm, addmm,  GEMMs (projections, MLPs); those of a matmul-softmax-matmul
      baddbmm, einsum                  attention are folded into that call
    anything else returning a tensor   counted under ``not_costed`` (norms, RoPE, activations ...)

Forward pre/post hooks keep the module path of each call ('layers.3.attn').

flex_attention is seen as its higher-order op (``attnsim.torch.flex``: run eagerly, meta allowed);
on the meta device it returns empty outputs of the right shape. Masks are read on CPU
(``attnsim.torch.masks``): a FlexAttention mask_mod is a function of the indices, so it works on
meta too unless it reads tensors that live there; a dense attn_mask on the meta device has no
values and is costed as full (said in the call's mask note).
"""
from __future__ import annotations

import contextlib
import inspect
import math
from collections import Counter

import torch
import torch.nn.attention.flex_attention as fa
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from attnsim.errors import AttnsimError
from attnsim.torch.calls import AttentionCall, Capture, GemmCall, layer_of
from attnsim.torch.flex import BlockMaskView, flex_eager
from attnsim.torch.masks import MaskError, builder_from_mask_mod, mask_from_block_mask, mask_from_dense, to_mask
from attnsim.workload.spec import Mask, Workload, check_workload

DTYPES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32",
          torch.float8_e4m3fn: "fp8", torch.float8_e5m2: "fp8"}
# metadata and views: no work of their own
FREE_OPS = {"size", "dim", "shape", "stride", "storage_offset", "is_contiguous", "numel", "__len__", "__get__",
            "__set__", "__getitem__", "view", "view_as", "reshape", "reshape_as", "transpose", "permute", "t", "T",
            "unsqueeze", "squeeze", "expand", "expand_as", "flatten", "unflatten", "chunk", "split",
            "unbind", "narrow", "select", "movedim", "contiguous", "detach", "requires_grad_", "item",
            "tolist", "type", "device", "dtype", "is_floating_point", "element_size", "data_ptr",
            "__bool__", "__index__", "__int__", "__float__", "__format__", "__repr__", "__hash__", "__eq__",
            "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "is_complex", "get_device", "is_meta", "_is_view",
            "__setstate__", "__reduce_ex__", "__deepcopy__", "ndim", "ndimension", "nelement", "tensor_split"}
SDPA_ARGS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")


class CaptureError(AttnsimError):
    """The model could not be captured (its forward failed, a call attnsim cannot read)."""


def _dtype(t: torch.Tensor) -> str:
    if t.dtype not in DTYPES:
        raise CaptureError(f"tensors of dtype {t.dtype} have no attnsim dtype; use one of "
                           f"{sorted({str(d) for d in DTYPES})}")
    return DTYPES[t.dtype]


def _name(func) -> str:
    return getattr(func, "__name__", None) or type(func).__name__


class _Tag:
    """Carried on tensors of a matmul-softmax-matmul in the making: a product (kind 'score')
    whose softmax over the last dim makes kind 'probs'."""

    def __init__(self, gemm_index: int, q: torch.Tensor, head_dim: int, out_shape: tuple):
        self.kind = "score"
        self.gemm_index = gemm_index
        self.dtype = q.dtype
        self.head_dim = head_dim  # the product's reduction: D
        self.shape = out_shape  # [..., M, N]
        self.scale = 1.0
        self.scaled = False
        self.mask = None  # (convention, tensor): 'allowed' bool, 'masked' bool, 'additive' float
        self.dropout = 0.0


class _Recorder(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.modules: list[str] = []
        self.attention: list[AttentionCall] = []
        self.gemms: list[GemmCall | None] = []
        self.not_costed: Counter = Counter()
        self.layers: dict = {}  # layer -> None, in order of first call
        self.block_masks: dict = {}  # converted BlockMasks, by identity
        self.handlers = {
            F.scaled_dot_product_attention: self._sdpa, F.linear: self._linear,
            F.multi_head_attention_forward: self._mha,
            torch.matmul: self._matmul, torch.Tensor.matmul: self._matmul, torch.Tensor.__matmul__: self._matmul,
            torch.bmm: self._matmul, torch.Tensor.bmm: self._matmul, torch.mm: self._matmul,
            torch.Tensor.mm: self._matmul, torch.baddbmm: self._matmul, torch.Tensor.baddbmm: self._matmul,
            torch.addmm: self._matmul, torch.Tensor.addmm: self._matmul, torch.einsum: self._einsum,
            F.softmax: self._softmax, torch.softmax: self._softmax, torch.Tensor.softmax: self._softmax,
            torch.special.softmax: self._softmax, F.dropout: self._dropout,
        }

    @property
    def module(self) -> str:
        return self.modules[-1] if self.modules else ""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        handler = self.handlers.get(func)
        if handler is None and isinstance(func, torch._ops.HigherOrderOperator) and _name(func) == "flex_attention":
            handler = self._flex
        if handler is not None:
            return handler(func, args, kwargs)
        out = func(*args, **kwargs)
        name = _name(func).strip("_")
        if isinstance(out, (torch.Tensor, tuple, list)) and name not in FREE_OPS and _name(func) not in FREE_OPS:
            self.not_costed[name] += 1
        if isinstance(out, torch.Tensor):
            self._propagate(func, args, kwargs, out)
        return out

    def _gemm(self, g: GemmCall, a: torch.Tensor) -> bool:
        """Record a GEMM; one in a dtype attnsim has no name for (float64, integers) is listed as not costed."""
        if a.dtype not in DTYPES:
            self.not_costed[f"{g.op} ({a.dtype})"] += 1
            return False
        self.layers.setdefault(layer_of(g.module), None)
        self.gemms.append(g)
        return True

    # ---- attention calls

    def _record(self, op, q_shape, heads, kv_heads, seq_q, seq_kv, head_dim, value_dim, dtype, mask, **info):
        batch = math.prod(q_shape[:-3]) if len(q_shape) > 3 else (q_shape[0] if len(q_shape) == 3 else 1)
        w = Workload(family="softmax", batch=int(batch), heads=int(heads), kv_heads=int(kv_heads), seq_q=int(seq_q),
                     seq_kv=int(seq_kv), head_dim=int(head_dim), value_dim=int(value_dim), dtype=dtype, mask=mask)
        try:
            check_workload(w)
        except AttnsimError as e:
            raise CaptureError(f"{op} at {self.module or '(model)'}: {e}") from None
        self.layers.setdefault(layer_of(self.module), None)
        self.attention.append(AttentionCall(op=op, module=self.module, workload=w, gqa=kv_heads < heads, **info))

    def _mask_or_full(self, convert, what: str) -> tuple[Mask, str]:
        try:
            return convert()
        except MaskError as e:
            return Mask("full"), f"{what}: {e}; costed as full"

    def _sdpa(self, func, args, kwargs):
        a = dict(zip(SDPA_ARGS, args)) | kwargs
        q, k, v = a["query"], a["key"], a["value"]
        seq_q, seq_kv, d, f = q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
        heads = q.shape[-3] if q.dim() >= 4 else 1  # [..., H, L, E]; a 3D q is [B, L, E]
        kv_heads = k.shape[-3] if k.dim() >= 4 else heads
        causal, am = bool(a.get("is_causal", False)), a.get("attn_mask")
        if am is not None:
            mask, note = self._mask_or_full(lambda: _dense(am, seq_q, seq_kv, "true"),
                                            f"attn_mask {list(am.shape)} {am.dtype}")
        elif causal and seq_q != seq_kv:  # SDPA's is_causal is top-left aligned (torch.tril)
            mask = to_mask(builder_from_mask_mod(lambda b, h, m, n: n <= m, 1, 1, seq_q, seq_kv))
            note = "is_causal with seq_q != seq_kv: top-left aligned (torch.tril), read element by element"
        else:
            mask, note = Mask("causal" if causal else "full"), "is_causal" if causal else "no mask"
        p = float(a.get("dropout_p", 0.0) or 0.0)
        scale = a.get("scale")
        self._record("sdpa", tuple(q.shape), heads, kv_heads, seq_q, seq_kv, d, f, _dtype(q), mask,
                     causal_flag=causal, scale=float(scale) if scale is not None else 1 / math.sqrt(d), dropout=p,
                     mask_note=note, notes=("dropout not costed",) if p > 0 else ())
        return func(*args, **kwargs)

    def _flex(self, func, args, kwargs):
        q, k, v, score_mod, bm_tuple, scale = args[:6]
        bm = BlockMaskView(bm_tuple)
        if bm.BLOCK_SIZE[0] >= fa._LARGE_SPARSE_BLOCK_SIZE:  # flex_attention's stand-in for "no block_mask"
            mask, note = Mask("full"), "no block_mask"
        else:
            key = (id(bm.kv_num_blocks), id(bm.mask_mod), bm.seq_lengths, bm.BLOCK_SIZE)
            if key not in self.block_masks:  # layers sharing one BlockMask: converted once
                try:
                    mask, note = mask_from_block_mask(bm)
                except MaskError as e:
                    raise CaptureError(f"flex_attention at {self.module or '(model)'}: {e}") from None
                # the BlockMask's tensors are kept so that their ids stay theirs during the capture
                self.block_masks[key] = (mask, note + "; " + describe(mask, q.shape[2], k.shape[2]), bm)
            mask, note, _ = self.block_masks[key]
        notes = () if score_mod is fa._identity else ("score_mod not costed (its elementwise work per score)",)
        self._record("flex_attention", tuple(q.shape), q.shape[1], k.shape[1], q.shape[2], k.shape[2], q.shape[3],
                     v.shape[3], _dtype(q), mask, scale=float(scale), mask_note=note, notes=notes)
        if q.is_meta:
            b, h, m = q.shape[:3]
            return (torch.empty(b, h, m, v.shape[3], dtype=q.dtype, device=q.device),
                    torch.empty(b, h, m, dtype=torch.float32, device=q.device),
                    torch.empty(b, h, m, dtype=torch.float32, device=q.device))
        return func(*args, **kwargs)

    def _mha(self, func, args, kwargs):
        a = inspect.signature(F.multi_head_attention_forward).bind(*args, **kwargs)
        a.apply_defaults()
        a = a.arguments
        q, k, v, heads = a["query"], a["key"], a["value"], int(a["num_heads"])
        seq_q, batch, e = (q.shape[0], q.shape[1], q.shape[2]) if q.dim() == 3 else (q.shape[0], 1, q.shape[1])
        seq_kv = k.shape[0]
        dt = _dtype(q)
        mod = self.module
        if not a["use_separate_proj_weight"] and q is k and k is v:
            self._gemm(GemmCall("mha in_proj", mod, 1, seq_q * batch, 3 * e, e, dt, True), q)
        else:
            for t, kk in ((q, q.shape[-1]), (k, k.shape[-1]), (v, v.shape[-1])):
                self._gemm(GemmCall("mha in_proj", mod, 1, t.shape[0] * batch, e, kk, dt, True), q)
        mask, note = self._mha_mask(a, batch, heads, seq_q, seq_kv)
        p = float(a["dropout_p"]) if a["training"] else 0.0
        self._record("multi_head_attention", (batch, heads, seq_q, e // heads), heads, heads, seq_q, seq_kv,
                     e // heads, e // heads, dt, mask, causal_flag=bool(a["is_causal"]), scale=1 / math.sqrt(e // heads),
                     dropout=p, mask_note=note, notes=("dropout not costed",) if p > 0 else ())
        self._gemm(GemmCall("mha out_proj", mod, 1, seq_q * batch, e, e, dt, True), q)
        return func(*args, **kwargs)

    def _mha_mask(self, a, batch, heads, seq_q, seq_kv) -> tuple[Mask, str]:
        """nn.MultiheadAttention's masks: attn_mask [L, S] or [B * heads, L, S] and key_padding_mask
        [B, S], bool (True = masked out) or additive float, combined into one allowed mask."""
        am, kpm = a["attn_mask"], a["key_padding_mask"]
        if am is None and kpm is None:
            return (Mask("causal"), "is_causal") if a["is_causal"] and seq_q == seq_kv else (Mask("full"), "no mask")

        def convert():
            allowed = torch.ones(1, 1, seq_q, seq_kv, dtype=torch.bool, device="cpu")
            for t, padding in ((am, False), (kpm, True)):
                if t is None:
                    continue
                if t.is_meta:
                    raise MaskError("the mask lives on the meta device, so its values are unknown")
                t = t.detach().cpu()
                shape = (-1, 1, 1, seq_kv) if padding else \
                    (batch, heads, seq_q, seq_kv) if t.dim() == 3 else (1, 1, seq_q, seq_kv)
                ok = ~t if t.dtype == torch.bool else ~(torch.isneginf(t) | (t <= torch.finfo(t.dtype).min))
                allowed = allowed & ok.reshape(shape)
            return _dense(allowed, seq_q, seq_kv, "true")
        return self._mask_or_full(convert, "attn_mask / key_padding_mask")

    # ---- GEMMs and the matmul-softmax-matmul pattern

    def _linear(self, func, args, kwargs):
        x, w = _operands(args, kwargs)[:2]
        kk, n = x.shape[-1], w.shape[0]
        self._gemm(GemmCall("linear", self.module, 1, x.numel() // max(1, kk), n, kk, DTYPES.get(x.dtype, ""), True), x)
        return func(*args, **kwargs)

    def _matmul(self, func, args, kwargs):
        name = _name(func).strip("_")
        out = func(*args, **kwargs)
        ops = _operands(args, kwargs)  # addmm / baddbmm: (bias, a, b)
        a, b = ops[-2:] if len(ops) >= 2 else (None, None)
        if a is None or a.dim() < 2 or b.dim() < 2:
            self.not_costed[name] += 1
            return out
        m, kk, n = a.shape[-2], a.shape[-1], b.shape[-1]
        if b.dim() == 2:  # a weight: fold a's batch into m
            count, m, shared = 1, a.numel() // kk, True
        else:
            count, shared = math.prod(out.shape[:-2]), False
        self._product(name, a, b, out, count, m, n, kk, shared)
        return out

    def _einsum(self, func, args, kwargs):
        out = func(*args, **kwargs)
        eq, ops = args[0], args[1:] if len(args) > 2 or not isinstance(args[1], (list, tuple)) else args[1]
        dims = _einsum_dims(eq, ops) if isinstance(eq, str) and len(ops) == 2 else None
        if dims is None:
            self.not_costed["einsum"] += 1
            return out
        count, m, n, kk = dims
        self._product("einsum", ops[0], ops[1], out, count, m, n, kk, ops[1].dim() == 2)
        return out

    def _product(self, name, a, b, out, count, m, n, kk, shared):
        tag = getattr(a, "_attnsim_tag", None)
        if tag is not None and tag.kind == "probs" and tuple(a.shape) == tag.shape:
            self._attention_from_tag(tag, a, b, out)
            return
        if not self._gemm(GemmCall(name, self.module, int(count), int(m), int(n), int(kk), DTYPES.get(a.dtype, ""),
                                   shared), a):
            return
        if out.dim() >= 2:
            out._attnsim_tag = _Tag(len(self.gemms) - 1, a, int(kk), tuple(out.shape))

    def _attention_from_tag(self, tag: _Tag, p: torch.Tensor, v: torch.Tensor, out: torch.Tensor):
        self.gemms[tag.gemm_index] = None  # S = Q K^T belongs to this attention call
        lead = tag.shape[:-2]  # [B, H], [B x H] (bmm) or []
        batch, heads = (math.prod(lead[:-1]), lead[-1]) if len(lead) >= 2 else (1, lead[0] if lead else 1)
        q_shape = (batch, heads, tag.shape[-2], tag.head_dim)
        kv_groups = math.prod(v.shape[:-2])  # V shared by query heads (MQA / GQA broadcast): fewer groups
        per_batch = kv_groups // batch if kv_groups % batch == 0 else 0
        kv_heads = per_batch if per_batch and heads % per_batch == 0 else heads
        seq_q, seq_kv = tag.shape[-2], tag.shape[-1]
        if tag.mask is None:
            mask, note = Mask("full"), "no mask"
        else:
            conv, t = tag.mask
            mask, note = self._mask_or_full(lambda: _dense(t, seq_q, seq_kv, conv), f"mask {list(t.shape)} {t.dtype}")
        self._record("matmul-softmax-matmul", q_shape, heads, kv_heads, seq_q, seq_kv, tag.head_dim, v.shape[-1],
                     DTYPES.get(tag.dtype, "fp32"), mask, scale=tag.scale if tag.scaled else None,
                     dropout=tag.dropout, mask_note=note, notes=("dropout not costed",) if tag.dropout else ())

    def _softmax(self, func, args, kwargs):
        out = func(*args, **kwargs)
        x = args[0]
        dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
        tag = getattr(x, "_attnsim_tag", None)
        if tag is not None and tag.kind == "score" and dim in (-1, x.dim() - 1):
            probs = _Tag.__new__(_Tag)
            probs.__dict__.update(tag.__dict__, kind="probs")
            out._attnsim_tag = probs
        else:
            self.not_costed["softmax"] += 1
        return out

    def _dropout(self, func, args, kwargs):
        out = func(*args, **kwargs)
        x = args[0]
        p = kwargs.get("p", args[1] if len(args) > 1 else 0.5)
        training = kwargs.get("training", args[2] if len(args) > 2 else True)
        tag = getattr(x, "_attnsim_tag", None)
        if tag is not None:
            tag.dropout = float(p) if training else 0.0
            out._attnsim_tag = tag
        elif training and p > 0:
            self.not_costed["dropout"] += 1
        return out

    def _propagate(self, func, args, kwargs, out):
        """Carry a score/probs tag through elementwise ops of the same shape; note its scale and mask."""
        flat = list(args) + list(kwargs.values())
        tagged = [x for x in flat if isinstance(x, torch.Tensor) and getattr(x, "_attnsim_tag", None) is not None]
        if not tagged or tuple(out.shape) != tagged[0]._attnsim_tag.shape:
            return
        src = tagged[0]
        tag = src._attnsim_tag
        out._attnsim_tag = tag
        if tag.kind != "score":
            return
        name = _name(func).strip("_").rstrip("_")
        others = [x for x in flat if x is not src]
        if name in ("mul", "div", "truediv", "rmul") and len(others) == 1 and _is_scalar(others[0]):
            s = float(others[0])
            tag.scale, tag.scaled = (tag.scale / s if name in ("div", "truediv") else tag.scale * s), True
        elif name in ("add", "radd") and others and isinstance(others[0], torch.Tensor) and others[0].dim() >= 2:
            tag.mask = ("additive", others[0])
        elif name == "masked_fill" and len(args) > 1 and isinstance(args[1], torch.Tensor):
            tag.mask = ("masked", args[1])
        elif name == "where" and len(args) > 1 and args[1] is src:
            tag.mask = ("allowed", args[0])


def _operands(args, kwargs) -> list:
    """The tensor operands of a call, positional first (an ``out=`` tensor is not an operand)."""
    vals = list(args) + [v for k, v in kwargs.items() if k != "out"]
    return [x for x in vals if isinstance(x, torch.Tensor)]


def _is_scalar(x) -> bool:
    return isinstance(x, (int, float)) or (isinstance(x, torch.Tensor) and x.numel() == 1 and not x.is_meta)


def _dense(t: torch.Tensor, seq_q: int, seq_kv: int, convention: str) -> tuple[Mask, str]:
    """A dense mask as an attnsim Mask, with a note on what it is."""
    if convention == "additive" and t.dtype == torch.bool:
        convention = "true"
    mask = mask_from_dense(t, seq_q, seq_kv, allowed_when="false" if convention == "masked" else "true")
    return mask, f"mask {list(t.shape)} {t.dtype}: " + describe(mask, seq_q, seq_kv)


def describe(mask: Mask, seq_q: int, seq_kv: int) -> str:
    """A closed form by name; block counts by their structure at 128 x 128 tiles."""
    if mask.kind != "block_counts":
        return f"equals the closed form {mask.label()}"
    bp, bc = min(128, seq_q), min(128, seq_kv)
    try:
        s = mask.counts.tile_stats(bp, bc)
    except AttnsimError:
        return f"block counts at {mask.counts.granule[0]}x{mask.counts.granule[1]}"
    per_head = s.rows * math.ceil(seq_kv / bc)
    causal = "causal" if mask.counts.causal else "not causal"
    return (f"{s.tiles:g} of {per_head} {bp}x{bc} tiles non-empty ({s.full_tiles:g} full), "
            f"{s.allowed / (seq_q * seq_kv):.1%} of pairs allowed, {causal}")


def _einsum_dims(eq: str, ops) -> tuple[int, int, int, int] | None:
    """(count, m, n, k) of a two-operand einsum without '...': batch letters in both inputs and
    the output, k letters in both inputs only, m / n letters in one input and the output."""
    if "..." in eq or "->" not in eq:
        return None
    ins, out = eq.replace(" ", "").split("->")
    parts = ins.split(",")
    if len(parts) != 2 or not all(isinstance(o, torch.Tensor) for o in ops):
        return None
    size = {}
    for letters, t in zip(parts, ops):
        if len(letters) != t.dim():
            return None
        size.update(zip(letters, t.shape))
    a, b = set(parts[0]), set(parts[1])
    o = set(out)

    def prod(letters):
        return math.prod(size[c] for c in letters)
    return (prod(a & b & o), prod((a & o) - b), prod((b & o) - a), prod((a & b) - o))


@contextlib.contextmanager
def _module_paths(model: torch.nn.Module, rec: _Recorder):
    names = {id(m): n for n, m in model.named_modules()}

    def pre(module, args):
        if id(module) in names:
            rec.modules.append(names[id(module)])

    def post(module, args, out):
        if id(module) in names and rec.modules:
            rec.modules.pop()
    from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
    handles = [register_module_forward_pre_hook(pre), register_module_forward_hook(post, always_call=True)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def capture(model: torch.nn.Module, *example_inputs, kwargs: dict | None = None) -> Capture:
    """Run ``model(*example_inputs, **kwargs)`` once under ``torch.no_grad()`` and record its
    attention calls and GEMMs. The model runs as given (call ``model.eval()`` first for inference).
    Raises CaptureError when the forward pass fails."""
    rec = _Recorder()
    try:
        with torch.no_grad(), flex_eager(), _module_paths(model, rec), rec:
            model(*example_inputs, **(kwargs or {}))
    except AttnsimError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's model failed: one line, no traceback
        meta = any(isinstance(t, torch.Tensor) and t.is_meta for t in example_inputs)
        hint = " (on the meta device a data-dependent step fails: try --device cpu at a small size)" if meta else ""
        raise CaptureError(f"the forward pass raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                           + hint) from None
    device = next((t.device.type for t in example_inputs if isinstance(t, torch.Tensor)), "cpu")
    return Capture(attention=tuple(rec.attention), gemms=tuple(g for g in rec.gemms if g is not None),
                   not_costed=dict(rec.not_costed), device=device, layer_order=tuple(rec.layers))
