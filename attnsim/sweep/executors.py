"""Where chunks of a sweep are evaluated: in this process, in local worker processes, or on a
Dask cluster. Each runs the same function (``evaluate.evaluate_chunk``) on the same
(sweep, chunk) pairs, so the table does not depend on which executor ran it.

    inprocess   this process, one chunk after another (numba batch per chunk)
    processes   a ProcessPoolExecutor of N spawned workers; the sweep is sent once per worker
    dask        a distributed.Client: an existing scheduler (tcp://HOST:8786), or a LocalCluster
                of N single-threaded worker processes on 127.0.0.1
"""
from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Iterator

from attnsim import __version__
from attnsim.errors import AttnsimError, Problem, SpecError
from attnsim.spec.schema import did_you_mean
from attnsim.sweep import evaluate

EXECUTORS = ("inprocess", "processes", "dask")


@dataclass(frozen=True)
class Chunk:
    id: int
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


class InProcessExecutor:
    name = "inprocess"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def run(self, sweep, chunks: list[Chunk]) -> Iterator:
        for c in chunks:
            yield c, evaluate.evaluate_chunk(sweep, c.start, c.stop)


# ---------------------------------------------------------------- local processes

_WORKER_SWEEP = None


def _init_worker(sweep) -> None:
    global _WORKER_SWEEP
    _WORKER_SWEEP = sweep


def _worker_chunk(start: int, stop: int):
    return evaluate.evaluate_chunk(_WORKER_SWEEP, start, stop)


class ProcessExecutor:
    """N spawned processes (spawn: no state forked from a parent that may hold threads); at most
    two chunks per worker in flight, so finished chunks reach the checkpoint as they complete."""

    name = "processes"

    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def run(self, sweep, chunks: list[Chunk]) -> Iterator:
        pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(sweep,))
        todo = iter(chunks)
        running: dict = {}
        try:
            def submit_next() -> None:
                c = next(todo, None)
                if c is not None:
                    running[pool.submit(_worker_chunk, c.start, c.stop)] = c

            for _ in range(2 * self.workers):
                submit_next()
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for f in sorted(done, key=lambda f: running[f].id):
                    c = running.pop(f)
                    frame = f.result()
                    submit_next()
                    yield c, frame
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------- dask

@contextlib.contextmanager
def _children_ignore_sigint():
    """Processes started inside ignore Ctrl-C (an ignored signal stays ignored across exec): the
    parent stops them when it is interrupted, and their own KeyboardInterrupt tracebacks would
    only clutter the terminal."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _attnsim_version() -> str:
    import attnsim
    return attnsim.__version__


class DaskExecutor:
    """A distributed.Client on `scheduler`, or on a LocalCluster of `workers` processes on loopback.

    Workers must have this attnsim installed, in this version (checked when the client starts).
    """

    name = "dask"

    def __init__(self, scheduler: str | None = None, workers: int | None = None, connect_timeout_s: float = 20):
        self.scheduler = scheduler
        self.workers = workers or os.cpu_count() or 1
        self.connect_timeout_s = connect_timeout_s
        self.client = self.cluster = None

    def __enter__(self):
        from distributed import Client, LocalCluster
        try:
            if self.scheduler:
                self.client = Client(self.scheduler, timeout=f"{self.connect_timeout_s}s")
            else:
                with _children_ignore_sigint():
                    self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                                host="127.0.0.1", dashboard_address=None,
                                                silence_logs=logging.ERROR)
                self.client = Client(self.cluster)
        except (OSError, TimeoutError) as e:
            self.__exit__(None, None, None)
            where = self.scheduler or "a local cluster"
            raise AttnsimError(f"cannot reach the Dask scheduler at {where}: {e}") from None
        self._check_workers()
        return self

    def _check_workers(self) -> None:
        try:
            versions = self.client.run(_attnsim_version)
        except Exception as e:  # noqa: BLE001 - a worker that cannot import attnsim fails here
            self.__exit__(None, None, None)
            raise AttnsimError(f"a Dask worker cannot run attnsim ({type(e).__name__}: {e}); install attnsim "
                               f"{__version__} on every worker") from None
        wrong = {addr: v for addr, v in versions.items() if v != __version__}
        if wrong:
            self.__exit__(None, None, None)
            raise AttnsimError(f"Dask workers run another attnsim version ({wrong}); this client has {__version__}")

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self.client = self.cluster = None
        return False

    def run(self, sweep, chunks: list[Chunk]) -> Iterator:
        from distributed import as_completed
        shared = self.client.scatter(sweep, broadcast=True)
        futures = {self.client.submit(evaluate.evaluate_chunk, shared, c.start, c.stop, pure=False,
                                      key=f"attnsim-sweep-{sweep.spec_hash}-{c.id}"): c for c in chunks}
        try:
            for f in as_completed(futures):
                c = futures[f]
                frame = f.result()
                f.release()
                yield c, frame
        finally:  # stopped early (an error, or the caller stopped): drop what has not run
            pending = [f for f in futures if not f.done()]
            if pending:
                self.client.cancel(pending)


def make_executor(name: str = "inprocess", workers: int | None = None, scheduler: str | None = None):
    """The executor for a name; --workers and --scheduler are checked against it."""
    if name not in EXECUTORS:
        raise SpecError(Problem(f"unknown executor {name!r}; executors: {', '.join(EXECUTORS)}", key="executor",
                                hint=did_you_mean(name, EXECUTORS)))
    if workers is not None and workers < 1:
        raise SpecError(Problem(f"expected at least 1 worker, got {workers}", key="workers"))
    if scheduler and name != "dask":
        raise SpecError(Problem("a scheduler address needs --executor dask", key="scheduler"))
    if name == "inprocess":
        if workers not in (None, 1):
            raise SpecError(Problem("the inprocess executor has one worker; use --executor processes or dask",
                                    key="workers"))
        return InProcessExecutor()
    if name == "processes":
        return ProcessExecutor(workers)
    if scheduler and workers is not None:
        raise SpecError(Problem("give --scheduler (an existing cluster) or --workers (a local one), not both",
                                key="workers"))
    return DaskExecutor(scheduler, workers)
