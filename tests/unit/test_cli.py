import json

import attnsim
from attnsim.cli import main


def test_predict_flags_json(capsys):
    assert main(["predict", "--arch", "h100_sxm5_80gb", "--seq", "4096", "--heads", "16", "--causal",
                 "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    w = attnsim.attention("softmax", heads=16, seq=4096, causal=True)
    assert d["latency_s"] == attnsim.predict("h100_sxm5_80gb", w).latency_s
    assert d["mapping"] == "flash3"


def test_predict_explain_shows_breakdown(capsys):
    assert main(["predict", "--seq-q", "1", "--seq-kv", "32768", "--batch", "8", "--kv-heads", "8",
                 "--explain"]) == 0
    out = capsys.readouterr().out
    for part in ("time terms", "traffic per level", "occupancy", "binding:", "flash_decode"):
        assert part in out


def test_predict_from_yaml_files(tmp_path, capsys):
    w = tmp_path / "w.yaml"
    w.write_text("batch: 2\nheads: 16\nkv_heads: 4\nseq_q: 2048\nseq_kv: 2048\nhead_dim: 64\n"
                 "mask: {kind: window, window: 512}\n")
    m = tmp_path / "m.yaml"
    m.write_text("style: fused\nblock_m: 128\nblock_n: 64\nwarps: 4\ninstr: mma_sync\n")
    assert main(["predict", "--workload", str(w), "--mapping", str(m), "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["mapping"] == "m" and d["workload"] == "w"
    assert d["counts"]["allowed (m,n) pairs per (b,h)"] < 2048 * 512 + 1


def test_list(capsys):
    assert main(["list"]) == 0
    assert "h100_sxm5_80gb" in capsys.readouterr().out
