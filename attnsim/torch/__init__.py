"""attnsim.torch: read a PyTorch model and predict what its attention and GEMMs cost.

    capture(model, *example_inputs)    every attention call (SDPA, flex_attention, matmul-softmax-
                                       matmul, nn.MultiheadAttention) and GEMM of one forward pass
    mask_from_mask_mod / mask_from_block_mask
                                       a FlexAttention mask as an attnsim Mask (exact counts per
                                       16 x 16 granule, or its closed form)
    predict_capture(capture, arch)     per-layer and total predicted time

Needs PyTorch (``pip install 'attnsim[validate]'``); nothing else in attnsim imports torch.
See docs/torch.md.
"""
try:
    import torch  # noqa: F401
except ImportError:  # pragma: no cover - exercised by tests that hide torch
    raise ImportError("attnsim.torch needs PyTorch: pip install 'attnsim[validate]'") from None

from attnsim.torch.calls import Capture  # noqa: E402
from attnsim.torch.record import capture  # noqa: E402
from attnsim.torch.cost import predict_capture  # noqa: E402
from attnsim.torch.masks import mask_from_block_mask, mask_from_dense, mask_from_mask_mod  # noqa: E402

__all__ = ["Capture", "capture", "mask_from_block_mask", "mask_from_dense", "mask_from_mask_mod", "predict_capture"]
