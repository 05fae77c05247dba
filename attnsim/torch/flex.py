"""Intercepting FlexAttention: run it eagerly under a capture, on meta tensors too, and read the
BlockMask it hands its higher-order op.

``flex_attention`` is a Python function over the higher-order op ``flex_attention_hop``; patching
the function would miss names bound by ``from ... import flex_attention``. A ``TorchFunctionMode``
sees the HOP when FlexAttention runs without ``torch.compile``, which its own debug switch
``_FLEX_ATTENTION_DISABLE_COMPILE_DEBUG`` does; its device check (``_validate_device``) refuses meta
tensors, so it is relaxed for them. Both are module globals that flex_attention reads at call time.
These are private names of torch 2.13, the version the ``validate`` extra pins.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.attention.flex_attention as fa

from attnsim.errors import AttnsimError


class BlockMaskView:
    """The fields of a BlockMask that flex_attention passes its higher-order op as a tuple
    (``BlockMask.as_tuple()``, torch 2.13: seq lengths, 8 block tensors, 4 dq-order fields,
    BLOCK_SIZE, mask_mod)."""

    def __init__(self, t: tuple):
        if len(t) != 17:
            raise AttnsimError(f"flex_attention passed a block-mask tuple of {len(t)} fields; this capture reads "
                               "the 17 of torch 2.13 (pip install 'attnsim[validate]')")
        self.seq_lengths = (int(t[0]), int(t[1]))
        self.kv_num_blocks, self.kv_indices, self.full_kv_num_blocks, self.full_kv_indices = t[2:6]
        self.BLOCK_SIZE = (int(t[14]), int(t[15]))
        self.mask_mod = t[16]


@contextlib.contextmanager
def flex_eager():
    """flex_attention without torch.compile, and with meta tensors allowed through its device check."""
    saved = fa._FLEX_ATTENTION_DISABLE_COMPILE_DEBUG, fa._validate_device
    original = fa._validate_device

    def validate(query, key, value):
        if not query.is_meta:
            original(query, key, value)
    fa._FLEX_ATTENTION_DISABLE_COMPILE_DEBUG, fa._validate_device = True, validate
    try:
        with torch._dynamo.config.patch(disable=True):
            yield
    finally:
        fa._FLEX_ATTENTION_DISABLE_COMPILE_DEBUG, fa._validate_device = saved
