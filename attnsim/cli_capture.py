"""`attnsim capture` and `attnsim predict --model`: read a PyTorch model, write or predict its calls.

    attnsim capture attnsim/torch/models/llama.py:factory --out llama_capture
    attnsim capture attnsim.torch.models.video_dit:factory --device cpu
    attnsim predict --model attnsim.torch.models.llama:llama3_8b --arch h100_sxm5_80gb [--format json]

TARGET is ``SCRIPT.py:FACTORY`` (a file) or ``MODULE:FACTORY`` (an importable module). FACTORY()
takes no arguments and returns ``(model, example_inputs)`` or ``(model, example_inputs, kwargs)``:
an ``nn.Module`` and a tuple of its positional inputs (or one tensor). It is called inside
``torch.device(DEVICE)``, so tensors it creates without a device land on DEVICE (meta by
default: no memory and no arithmetic, any size). Errors are one line, exit 2. See docs/torch.md.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

from attnsim.errors import AttnsimError

INSTALL = "pip install 'attnsim[validate]'"
DTYPES = ["fp16", "bf16", "fp8", "fp32"]


def _need_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise AttnsimError(f"reading a PyTorch model needs PyTorch, which is not installed: {INSTALL}") from None


def load_factory(target: str):
    """The FACTORY function named by ``SCRIPT.py:FACTORY`` or ``MODULE:FACTORY``."""
    script, sep, name = target.rpartition(":")
    if not sep or not script or not name:
        raise AttnsimError(f"expected SCRIPT.py:FACTORY or MODULE:FACTORY, got {target!r}")
    if script.endswith(".py") or "/" in script or "\\" in script:
        path = Path(script)
        if not path.is_file():
            raise AttnsimError(f"{script}: no such file")
        spec = importlib.util.spec_from_file_location(f"attnsim_capture_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.resolve().parent))  # the script may import its neighbours
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # noqa: BLE001 - the user's script: one line, no traceback
            raise AttnsimError(f"importing {script} raised {type(e).__name__}: {e}") from None
        finally:
            sys.path.pop(0)
    else:
        try:
            module = importlib.import_module(script)
        except Exception as e:  # noqa: BLE001
            raise AttnsimError(f"importing module {script} raised {type(e).__name__}: {e}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        defined = sorted(k for k, v in vars(module).items() if inspect.isfunction(v) and not k.startswith("_")
                         and v.__module__ == module.__name__)
        raise AttnsimError(f"{script} has no function {name!r}; it defines: {', '.join(defined) or 'no functions'}")
    return fn


def run_factory(target: str, device: str):
    """Call FACTORY under ``torch.device(device)`` and capture one forward pass."""
    _need_torch()
    import torch
    from attnsim.torch.record import capture
    fn = load_factory(target)
    with torch.device(device):
        try:
            made = fn()
        except Exception as e:  # noqa: BLE001
            raise AttnsimError(f"{target} raised {type(e).__name__}: {e}") from None
        if not isinstance(made, (tuple, list)) or len(made) not in (2, 3) or not isinstance(made[0], torch.nn.Module):
            raise AttnsimError(f"{target} must return (model, example_inputs) or (model, example_inputs, kwargs) with "
                               f"an nn.Module first; got {type(made).__name__}")
        model, inputs = made[0], made[1]
        kwargs = made[2] if len(made) == 3 else {}
        inputs = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
        cap = capture(model, *inputs, kwargs=kwargs)
    if not cap.attention:
        raise AttnsimError(f"no attention calls found in the forward pass of {target} (looked for "
                           "scaled_dot_product_attention, flex_attention, nn.MultiheadAttention and "
                           "matmul-softmax-matmul)")
    return cap


def cmd_capture(a) -> int:
    _need_torch()
    from dataclasses import replace
    from attnsim.torch.export import write_capture
    cap = run_factory(a.target, a.device)
    if a.dtype:
        from attnsim.torch.calls import Capture
        cap = Capture(attention=tuple(replace(c, workload=replace(c.workload, dtype=a.dtype)) for c in cap.attention),
                      gemms=tuple(replace(g, dtype=a.dtype) for g in cap.gemms), not_costed=cap.not_costed,
                      device=cap.device, layer_order=cap.layer_order)
    side = write_capture(cap, a.out, source=a.target)
    print((Path(a.out) / "summary.md").read_text())
    print(f"wrote {len(side['attention'])} workload YAML(s), gemms.csv ({len(side['gemms'])} distinct GEMMs), "
          f"summary.md and capture.json to {a.out}/")
    return 0


def predict_model(a) -> int:
    """`attnsim predict --model TARGET`: per-layer and total predicted time."""
    _need_torch()
    from attnsim.torch.cost import predict_capture
    cap = run_factory(a.model, a.model_device)
    p = predict_capture(cap, a.arch, mapping=a.mapping or a.algorithm, dtype=a.model_dtype)
    if a.format == "json":
        import json
        print(json.dumps(p.to_dict(), indent=2))
    else:
        print(f"{a.model} ({cap.device} device): {len(cap.attention)} attention calls, {len(cap.gemms)} GEMMs")
        print(p.table())
    return 0


def add_parser(sub) -> None:
    """Register `capture`, and --model (with --model-device, --model-dtype) on `predict`."""
    c = sub.add_parser("capture", help="record a PyTorch model's attention calls and GEMMs as workload YAMLs")
    c.add_argument("target", help="SCRIPT.py:FACTORY or MODULE:FACTORY; FACTORY() returns (model, example_inputs)")
    c.add_argument("--out", default="capture", help="output folder (default capture/)")
    c.add_argument("--device", choices=["meta", "cpu"], default="meta",
                   help="where FACTORY builds the model (default meta: shapes only; cpu to read mask values)")
    c.add_argument("--dtype", choices=DTYPES, help="write every call in this dtype (default: as captured)")
    c.set_defaults(func=cmd_capture)
    pr = sub.choices["predict"]
    pr.add_argument("--model", help="SCRIPT.py:FACTORY or MODULE:FACTORY: predict every layer of a PyTorch model")
    pr.add_argument("--model-device", choices=["meta", "cpu"], default="meta", help="with --model (default meta)")
    pr.add_argument("--model-dtype", choices=DTYPES, help="with --model: cost every call in this dtype "
                                                           "(default: as captured)")
