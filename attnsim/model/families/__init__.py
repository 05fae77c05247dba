"""Each family's plan: the kernels a well-known implementation launches, with their default
GPU and spatial mappings. One module per family group, beside attnsim.workload.families.

A module defines ``PLANS = {family name: plan(arch, workload, mapping) -> Plan}``. ``mapping``
is what the user gave ``attnsim.predict``: None (the family's default kernels), an algorithm
name for the attention kernel inside the plan ('flash2', 'flash3', ...), a KernelMapping or
SpatialMapping for the family's main kernel; each plan function says how it reads it.
"""
from __future__ import annotations

import importlib

from attnsim.errors import WorkloadError, Problem
from attnsim.workload.families import REGISTRY


def plan_for(arch, w, mapping=None):
    module = REGISTRY.get(w.family)
    if module is None or module == "softmax":
        raise WorkloadError(Problem(f"family {w.family!r} has no plan; it is costed by the attention model",
                                    key="family"))
    plans = importlib.import_module(f"attnsim.model.families.{module}").PLANS
    return plans[w.family](arch, w, mapping)
