"""Dask scale-out: a LocalCluster on loopback gives the same table as the in-process and
process-pool executors; an existing scheduler is reached by its address; workers must run the
same attnsim version. Clusters are closed by the tests."""
import pandas as pd
import pytest

import attnsim
from attnsim.errors import AttnsimError
from attnsim.sweep import build_sweep, run_sweep

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def sweep():
    w = attnsim.attention("softmax", batch=2, heads=32, kv_heads=8, seq=4096, head_dim=128, causal=True)
    return build_sweep("h100_sxm5_80gb", w, None,
                       ["arch.levels.SMEM.capacity=64KiB..256KiB:+64KiB", "workload.seq=1,1k,8k",
                        "mapping=flash2,flash3", "arch.levels.HBM.bandwidth=2TB/s,3.35TB/s"])


@pytest.fixture(scope="module")
def reference(sweep):
    return run_sweep(sweep, chunk_size=12, progress=False).table


def test_executors_give_identical_tables(sweep, reference, tmp_path):
    assert len(reference) == 48 and (reference.status == "ok").sum() > 0 and (reference.status != "ok").sum() > 0
    procs = run_sweep(sweep, tmp_path / "p.parquet", executor="processes", workers=2, chunk_size=12, progress=False)
    local = run_sweep(sweep, tmp_path / "d.parquet", executor="dask", workers=2, chunk_size=12, progress=False)
    pd.testing.assert_frame_equal(procs.table, reference)
    pd.testing.assert_frame_equal(local.table, reference)
    assert sorted(local.computed) == [0, 1, 2, 3]


@pytest.fixture(scope="module")
def scheduler():
    """An existing cluster, as a user would start with dask-scheduler / dask-worker: TCP on loopback."""
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def test_existing_scheduler_by_address(sweep, reference, scheduler, tmp_path):
    assert scheduler.startswith("tcp://127.0.0.1:")
    run = run_sweep(sweep, tmp_path / "s.parquet", executor="dask", scheduler=scheduler, chunk_size=12,
                    progress=False)
    pd.testing.assert_frame_equal(run.table, reference)
    # resumes like any other executor: a finished sweep computes nothing
    again = run_sweep(sweep, tmp_path / "s.parquet", executor="dask", scheduler=scheduler, chunk_size=12,
                      progress=False)
    assert again.computed == [] and again.reused == [0, 1, 2, 3]


def test_workers_must_run_the_same_attnsim(sweep, scheduler, tmp_path, monkeypatch):
    from attnsim.sweep import executors
    monkeypatch.setattr(executors, "__version__", "0.0.0-client")
    with pytest.raises(AttnsimError, match="another attnsim version"):
        run_sweep(sweep, tmp_path / "v.parquet", executor="dask", scheduler=scheduler, progress=False)


def test_unreachable_scheduler_is_a_clear_error(sweep):
    with pytest.raises(AttnsimError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        from attnsim.sweep.executors import DaskExecutor
        with DaskExecutor(scheduler="tcp://127.0.0.1:9", connect_timeout_s=1):
            pass
