"""attnsim: a design-space simulator and cost model for attention on accelerators.

    >>> import attnsim
    >>> w = attnsim.attention("softmax", batch=1, heads=32, kv_heads=8, seq=8192, head_dim=128, causal=True)
    >>> r = attnsim.predict("h100_sxm5_80gb", w)            # FlashAttention-3-style by default
    >>> print(r.explain())
"""
__version__ = "0.1.0"

from attnsim.arch import Arch, list_arch_presets, load_arch  # noqa: E402
from attnsim.errors import AttnsimError, MappingError, SpecError, WorkloadError  # noqa: E402
from attnsim.mapping.kernel import KernelMapping, default_mapping, load_mapping  # noqa: E402
from attnsim.model.analytical import predict  # noqa: E402
from attnsim.model.result import Result  # noqa: E402
from attnsim.workload.spec import Mask, Workload, attention, load_workload  # noqa: E402

__all__ = ["Arch", "AttnsimError", "KernelMapping", "MappingError", "Mask", "Result", "SpecError",
           "Workload", "WorkloadError", "attention", "default_mapping", "list_arch_presets", "load_arch",
           "load_mapping", "load_workload", "predict", "__version__"]
