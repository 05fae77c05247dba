"""Run a sweep: its chunks go through an executor, each finished chunk is checkpointed to Parquet,
and the parts are assembled into one table.

Checkpoint layout for ``-o OUT.parquet``:

    OUT.parquet.d/manifest.json      spec hash, chunk size, point count, completed chunk ids
    OUT.parquet.d/part-00000.parquet one file per finished chunk (written, then renamed into place)
    OUT.parquet                      the whole table, written when every chunk is done

A killed sweep re-run with the same command finds the manifest, skips every chunk whose part
is on disk and whole, and computes only the rest. A different sweep aimed at the same path is refused unless
``overwrite`` is given. Parts stay after the run, so a finished sweep re-run costs nothing.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from attnsim import __version__
from attnsim.errors import Problem, SpecError
from attnsim.sweep.executors import Chunk, make_executor

DEFAULT_CHUNK_SIZE = 50_000
MANIFEST = "manifest.json"
FORMAT = "attnsim-sweep-checkpoint/1"


@dataclass
class SweepRun:
    """What a run produced: the table, where it went, and which chunks it computed or reused."""

    table: pd.DataFrame
    path: Path | None = None
    csv_path: Path | None = None
    computed: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)

    @property
    def n_ok(self) -> int:
        return int((self.table["status"] == "ok").sum())

    @property
    def n_failed(self) -> int:
        return len(self.table) - self.n_ok


def chunks_of(n_points: int, chunk_size: int) -> list[Chunk]:
    if chunk_size < 1:
        raise SpecError(Problem(f"expected a chunk size of at least 1, got {chunk_size}", key="chunk_size"))
    return [Chunk(i, s, min(n_points, s + chunk_size)) for i, s in enumerate(range(0, n_points, chunk_size))]


def run_sweep(sweep, out: str | Path | None = None, *, executor: str = "inprocess", workers: int | None = None,
              scheduler: str | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE, overwrite: bool = False,
              csv: bool = False, progress: bool = True,
              on_chunk: Callable[[int, pd.DataFrame], None] | None = None) -> SweepRun:
    """Evaluate every point of `sweep`; with `out`, checkpoint chunks and write the Parquet table.

    `executor` is 'inprocess', 'processes' (`workers` processes) or 'dask' (`scheduler`
    address, or a LocalCluster of `workers` processes). `on_chunk(chunk_id, frame)` is called
    after each newly computed chunk is saved. A point that fails is a row whose `status` says
    why; only a problem with the sweep itself (or its output path) raises.
    """
    chunks = chunks_of(len(sweep), chunk_size)
    ex = make_executor(executor, workers, scheduler)
    ckpt = Checkpoint(Path(out), sweep, chunk_size) if out is not None else None
    done = ckpt.open(overwrite, chunks) if ckpt else set()
    todo = [c for c in chunks if c.id not in done]
    frames: dict[int, pd.DataFrame] = {}
    run = SweepRun(table=pd.DataFrame(), reused=sorted(done))
    bar = _progress(len(sweep), sum(len(c) for c in chunks if c.id in done), progress)
    try:
        if todo:
            with ex, contextlib.closing(ex.run(sweep, todo)) as results:
                for c, frame in results:
                    if ckpt:
                        ckpt.save(c.id, frame)
                    else:
                        frames[c.id] = frame
                    run.computed.append(c.id)
                    bar.update(len(c))
                    if on_chunk is not None:
                        on_chunk(c.id, frame)
    finally:
        bar.close()
        if ckpt:
            ckpt.write_manifest()
    if ckpt:
        run.table = ckpt.assemble(len(chunks))
        run.path = ckpt.out
    else:
        run.table = pd.concat([frames[c.id] for c in chunks], ignore_index=True) if chunks else pd.DataFrame()
    if csv and out is not None:
        run.csv_path = Path(out).with_suffix(".csv")
        _atomic(run.csv_path, lambda tmp: run.table.to_csv(tmp, index=False))
    return run


def evaluate_sweep(sweep, chunk_size: int = DEFAULT_CHUNK_SIZE) -> pd.DataFrame:
    """The whole table in memory, in this process (no checkpoint, no progress bar)."""
    return run_sweep(sweep, chunk_size=chunk_size, progress=False).table


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="pt", unit_scale=True, desc="sweep", file=sys.stderr,
                disable=not enabled, smoothing=0.1, mininterval=0.5, dynamic_ncols=True)


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file beside `path`, then rename: a kill leaves the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class Checkpoint:
    """Finished chunks of one sweep under ``OUT.d/``, and the manifest that lists them.

    A part file is written under a temporary name and renamed, so one that exists is whole; on
    resume, parts on disk that read back with their chunk's row count count as done even if a
    kill came between the rename and the manifest update (the manifest is rewritten at most
    every MANIFEST_INTERVAL_S seconds while a sweep runs, and when it stops).
    """

    MANIFEST_INTERVAL_S = 2.0

    def __init__(self, out: Path, sweep, chunk_size: int):
        self.out = out
        self.dir = out.with_name(out.name + ".d")
        self.sweep = sweep
        self.chunk_size = chunk_size
        self.completed: set[int] = set()
        self._written = 0.0

    def part(self, chunk_id: int) -> Path:
        return self.dir / f"part-{chunk_id:05d}.parquet"

    def open(self, overwrite: bool, chunks: list[Chunk]) -> set[int]:
        """The ids of chunks already done (for this sweep); a different sweep here raises."""
        manifest = self.dir / MANIFEST
        if overwrite:
            shutil.rmtree(self.dir, ignore_errors=True)
            if self.out.exists():
                self.out.unlink()
        if manifest.exists():
            self._check(self._read(manifest))
            self.completed = {c.id for c in chunks if self._whole(c)}
        elif self.out.exists() or (self.dir.exists() and any(self.dir.iterdir())):
            raise SpecError(Problem(f"{self.out} exists and was not written by a checkpointed attnsim sweep; "
                                    "choose another output or pass --overwrite", key="output"))
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.write_manifest()
        return set(self.completed)

    def _whole(self, chunk: Chunk) -> bool:
        import pyarrow.parquet as pq
        try:
            return pq.read_metadata(self.part(chunk.id)).num_rows == len(chunk)
        except (OSError, ValueError):  # missing, or not Parquet (pyarrow raises ArrowInvalid, a ValueError)
            return False

    def _read(self, manifest: Path) -> dict:
        try:
            return json.loads(manifest.read_text())
        except (OSError, ValueError) as e:
            raise SpecError(Problem(f"unreadable checkpoint manifest ({e}); pass --overwrite to start over",
                                    file=str(manifest))) from None

    def _check(self, m: dict) -> None:
        if m.get("format") != FORMAT:
            raise SpecError(Problem(f"not an attnsim sweep checkpoint (format {m.get('format')!r})",
                                    file=str(self.dir / MANIFEST), hint="pass --overwrite to start over"))
        if m.get("spec_hash") != self.sweep.spec_hash:
            there, here = m.get("sweep") or {}, self.sweep.describe()
            diff = [f"{k} {there.get(k)!r} there, {here.get(k)!r} here" for k in here if there.get(k) != here.get(k)]
            raise SpecError(Problem(
                f"{self.out} holds results of a different sweep ("
                + ("; ".join(diff) if diff else "the same description, but other spec contents or attnsim version")
                + ")", key="output", hint="choose another output, or pass --overwrite to discard those results"))
        if m.get("chunk_size") != self.chunk_size:
            raise SpecError(Problem(f"{self.out} was checkpointed with --chunk-size {m.get('chunk_size')}, this run "
                                    f"asks for {self.chunk_size}", key="chunk_size",
                                    hint=f"re-run with --chunk-size {m.get('chunk_size')} to resume"))

    def write_manifest(self) -> None:
        n = len(self.sweep)
        doc = {"format": FORMAT, "attnsim": __version__, "spec_hash": self.sweep.spec_hash, "points": n,
               "chunk_size": self.chunk_size, "chunks": -(-n // self.chunk_size),
               "completed": sorted(self.completed), "sweep": self.sweep.describe()}
        _atomic(self.dir / MANIFEST, lambda tmp: tmp.write_text(json.dumps(doc, indent=1, default=str)))
        self._written = time.monotonic()

    def save(self, chunk_id: int, frame: pd.DataFrame) -> None:
        _atomic(self.part(chunk_id), lambda tmp: frame.to_parquet(tmp, index=False))
        self.completed.add(chunk_id)
        if time.monotonic() - self._written >= self.MANIFEST_INTERVAL_S:
            self.write_manifest()

    def assemble(self, n_chunks: int) -> pd.DataFrame:
        """Concatenate the parts in chunk order and write the final table."""
        import pyarrow as pa
        import pyarrow.parquet as pq
        missing = [i for i in range(n_chunks) if i not in self.completed]
        if missing:
            raise SpecError(Problem(f"chunks {missing[:5]} are missing from the checkpoint", file=str(self.dir)))
        if not n_chunks:
            return pd.DataFrame()
        table = pa.concat_tables([pq.read_table(self.part(i)) for i in range(n_chunks)])
        _atomic(self.out, lambda tmp: pq.write_table(table, tmp))
        return table.to_pandas()
