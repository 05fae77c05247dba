"""`attnsim capture` and `attnsim predict --model`, in-process through attnsim.cli.main."""
import json
import sys
from pathlib import Path

import pytest

from attnsim.cli import main

MODELS = Path(__file__).resolve().parents[2] / "attnsim" / "torch" / "models"


def test_without_torch_both_commands_say_how_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    for argv in (["capture", f"{MODELS / 'llama.py'}:factory", "--out", str(tmp_path)],
                 ["predict", "--model", f"{MODELS / 'llama.py'}:factory"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "pip install 'attnsim[validate]'" in err
    assert not any(tmp_path.iterdir())


def test_predict_model_end_to_end(capsys):
    pytest.importorskip("torch")
    assert main(["predict", "--model", f"{MODELS / 'llama.py'}:factory", "--arch", "h100_sxm5_80gb"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("layers.", "total", "(model)"))}
    assert set(rows) == {"layers.0", "layers.1", "total"}
    assert "attn share" in out and "not costed" in out and "sdpa B2-H4-Hkv2-M200-N200-D64-causal-bf16" in out


def test_predict_model_json_matches_the_api(capsys):
    pytest.importorskip("torch")
    import torch
    from attnsim.torch import capture, predict_capture
    from attnsim.torch.models import vit
    assert main(["predict", "--model", "attnsim.torch.models.vit:factory", "--arch", "a100_sxm4_80gb",
                 "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    with torch.device("meta"):
        model, inputs = vit.factory()
        want = predict_capture(capture(model, *inputs), "a100_sxm4_80gb")
    assert d["total_s"] == want.total_s and [r["layer"] for r in d["layers"]] == ["blocks.0", "blocks.1"]
    assert d["attention_s"] + d["gemm_s"] == pytest.approx(d["total_s"], rel=1e-12)


def test_capture_writes_the_folder(tmp_path, capsys):
    pytest.importorskip("torch")
    import attnsim
    out = tmp_path / "cap"
    assert main(["capture", f"{MODELS / 'plain.py'}:factory", "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "| attention_01.yaml | matmul-softmax-matmul | 1 |" in printed and f"to {out}/" in printed
    side = json.loads((out / "capture.json").read_text())
    assert side["attention"][0]["mask"] == "causal" and side["device"] == "cpu"
    assert attnsim.load_workload(out / "attention_01.yaml").mask.kind == "causal"
    assert main(["predict", "--workload", str(out / "attention_01.yaml")]) == 0


@pytest.mark.parametrize("target,expect", [
    ("nowhere/model.py:factory", "no such file"),
    ("{models}/llama.py:nope", "has no function 'nope'; it defines: build, factory, llama3_8b, rotate_half"),
    ("{models}/llama.py", "expected SCRIPT.py:FACTORY"),
    ("{tmp}/raises.py:factory", "raised RuntimeError: boom"),
    ("{tmp}/noattn.py:factory", "no attention calls found"),
    ("{tmp}/notmodel.py:factory", "must return (model, example_inputs)"),
], ids=["missing-file", "missing-factory", "no-factory-named", "factory-raises", "no-attention", "bad-return"])
def test_errors_are_one_line_exit_2(tmp_path, capsys, target, expect):
    pytest.importorskip("torch")
    (tmp_path / "raises.py").write_text("def factory():\n    raise RuntimeError('boom')\n")
    (tmp_path / "noattn.py").write_text("import torch\ndef factory():\n"
                                        "    return torch.nn.Linear(8, 8), (torch.zeros(2, 8),)\n")
    (tmp_path / "notmodel.py").write_text("def factory():\n    return 3\n")
    target = target.format(models=MODELS, tmp=tmp_path)
    for argv in (["capture", target, "--out", str(tmp_path / "o")], ["predict", "--model", target]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expect in err and "Traceback" not in err


def test_fp32_model_on_hopper_says_which_dtype_to_use(tmp_path, capsys):
    pytest.importorskip("torch")
    (tmp_path / "f32.py").write_text(
        "import torch\nimport torch.nn.functional as F\n"
        "class M(torch.nn.Module):\n    def forward(self, q):\n"
        "        return F.scaled_dot_product_attention(q, q, q)\n"
        "def factory():\n    return M(), (torch.zeros(1, 2, 256, 64),)\n")
    assert main(["predict", "--model", f"{tmp_path / 'f32.py'}:factory"]) == 2
    assert "--dtype bf16" in capsys.readouterr().err
    assert main(["predict", "--model", f"{tmp_path / 'f32.py'}:factory", "--model-dtype", "bf16"]) == 0


def test_attnsim_imports_and_predicts_without_torch(tmp_path):
    import subprocess
    import numpy as np
    from attnsim.workload.block_counts import counts_from_bool
    counts_from_bool(np.tril(np.ones((200, 200), bool))).build().save(tmp_path / "m.npz")
    (tmp_path / "w.yaml").write_text("batch: 1\nheads: 4\nseq_q: 200\nseq_kv: 200\nhead_dim: 64\n"
                                     "mask: {kind: block_counts, file: m.npz}\n")
    code = ("import sys; sys.modules['torch'] = None\n"
            "import attnsim, attnsim.cli\n"
            f"r = attnsim.predict('h100_sxm5_80gb', attnsim.load_workload({str(tmp_path / 'w.yaml')!r}))\n"
            "assert r.latency_s > 0 and 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
            "try:\n    import attnsim.torch\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "attnsim.torch needs PyTorch: pip install 'attnsim[validate]'"
