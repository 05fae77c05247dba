"""The standard sweep figures, as PNG files (matplotlib, Agg backend).

    capacity.png         latency and HBM traffic vs a varied on-chip capacity, one line per workload
                         (sequence length, ...), each point the best design over the other varied
                         arch and mapping fields
    pareto_capacity.png  latency vs on-chip capacity: a Pareto front per workload (the combination of
                         varied workload fields; latencies of different workloads do not compete),
                         in colour, dominated points grey
    pareto_energy.png    latency vs energy, the same way

Only points with status 'ok' are drawn. With more than 20,000 points the grey cloud is a seeded
random subset of them; the front is always computed over every point.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SEQ_COLUMNS = ("workload.seq", "workload.seq_kv", "workload.seq_q")  # the lines of the capacity plot
MAX_DRAWN = 20_000
MAX_FRONTS = 8  # workloads whose fronts are drawn in colour


def pareto_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """True where no other point has x' <= x and y' <= y with one strictly smaller (minimising both)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    order = np.lexsort((y, x))  # by x, then y
    ys = y[order]
    best_before = np.minimum.accumulate(np.concatenate(([np.inf], ys[:-1])))
    keep = ys < best_before
    mask = np.zeros(len(x), dtype=bool)
    mask[order[keep]] = True
    return mask


def capacity_axes(sweep) -> list[str]:
    """Columns of varied on-chip capacities (every level but the outermost, and the SMEM limits)."""
    outer = sweep.arch.levels[0].name
    cols = []
    for ax in sweep.axes:
        c = ax.column
        if ax.param.kind != "size":
            continue
        onchip_level = c.startswith("arch.levels.") and not c.startswith(f"arch.levels.{outer}.")
        if onchip_level or c.startswith("arch.gpu.smem"):
            cols.append(c)
    return cols


def onchip_bytes(table: pd.DataFrame, sweep) -> np.ndarray:
    """Total on-chip storage of each point: capacity x instances over every level below the outermost."""
    total = np.zeros(len(table))
    for lv in sweep.arch.levels[1:]:
        cap_col, inst_col = f"arch.levels.{lv.name}.capacity_bytes", f"arch.levels.{lv.name}.instances"
        cap = table[cap_col].to_numpy(float) if cap_col in table else lv.capacity_bytes
        inst = table[inst_col].to_numpy(float) if inst_col in table else lv.instances
        total = total + cap * inst
    return total


def standard_plots(table: pd.DataFrame, sweep, out_dir: str | Path) -> list[Path]:
    """Write the standard figures for this sweep's table into `out_dir`; returns their paths."""
    import matplotlib
    matplotlib.use("Agg")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ok = table[table["status"] == "ok"]
    paths = []
    if ok.empty:
        return paths
    caps = capacity_axes(sweep)
    if caps:
        paths.append(plot_capacity(ok, sweep, caps[0], out_dir / "capacity.png"))
        if len(caps) == 1:
            scale, unit = _binary_unit(ok[caps[0]].max())
            x, xlabel = ok[caps[0]].to_numpy(float) / scale, f"{_short(caps[0])} ({unit})"
        else:
            x, xlabel = onchip_bytes(ok, sweep) / 2 ** 20, "on-chip capacity, all levels and instances (MiB)"
        paths.append(plot_pareto(ok, sweep, x, xlabel, "latency vs on-chip capacity", out_dir / "pareto_capacity.png",
                                 log_x=2 if np.nanmax(x) > 4 * np.nanmin(x) else None))
    e = ok["energy_j"].to_numpy(float) * 1e3
    paths.append(plot_pareto(ok, sweep, e, "energy (mJ)", "latency vs energy", out_dir / "pareto_energy.png",
                             log_x=10 if np.nanmax(e) > 10 * np.nanmin(e) else None))
    return paths


def plot_capacity(ok: pd.DataFrame, sweep, cap: str, path: Path) -> Path:
    """Two panels over `cap`: one line per workload (the varied workload fields; with more than
    MAX_FRONTS of them, workload fields other than the sequence length are held at their first
    value), each point the lowest-latency design over the other varied arch and mapping fields."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator
    wl = [a.column for a in sweep.axes if a.param.section == "workload"]
    held = []
    if wl and ok.groupby(wl).ngroups > MAX_FRONTS:
        seq = next((c for c in SEQ_COLUMNS if c in wl), wl[0])
        held = [c for c in wl if c != seq]
        for c in held:
            ok = ok[ok[c] == sweep.axes[[a.column for a in sweep.axes].index(c)].values[0]]
        wl = [seq]
    best = ok.loc[ok.groupby([cap] + wl, sort=True)["latency_s"].idxmin()]
    free = [a.column for a in sweep.axes if a.column != cap and a.column not in wl + held]
    scale, unit = _binary_unit(best[cap].max())
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.4))
    for key, part in (best.groupby(wl, sort=True) if wl else [((), best)]):
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(_value_label(c, v) for c, v in zip(wl, key)) or sweep.workload.label()
        x = part[cap].to_numpy(float) / scale
        ax1.plot(x, part["latency_s"] * 1e3, marker="o", ms=3, label=label)
        ax2.plot(x, part["hbm_bytes"] / 1e6, marker="o", ms=3, label=label)
    ticks = _spread(np.unique(best[cap].to_numpy(float) / scale))
    for ax, ylabel in ((ax1, "latency (ms)"), (ax2, "HBM traffic (MB)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_yscale("log")
        ax.set_xlabel(f"{_short(cap)} ({unit})")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=7)
    notes = []
    if free:
        notes.append(f"each point: the lowest latency over {', '.join(_short(c) for c in free)}")
    if held:
        notes.append("held at the first value: " + ", ".join(_short(c) for c in held))
    fig.suptitle(_title(sweep, f"latency and HBM traffic vs {_short(cap)}") +
                 "".join(f"\n{n}" for n in notes), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _binary_unit(max_bytes: float) -> tuple[int, str]:
    return (2 ** 20, "MiB") if max_bytes >= 4 * 2 ** 20 else (1024, "KiB")


def _value_label(column: str, v) -> str:
    return f"{_short(column)}={v:,}" if isinstance(v, (int, np.integer)) else f"{_short(column)}={v}"


def plot_pareto(ok: pd.DataFrame, sweep, x: np.ndarray, xlabel: str, what: str, path: Path,
                log_x: int | None = None) -> Path:
    """Latency vs `x`: one Pareto front per workload (the varied workload fields), dominated points grey."""
    import matplotlib.pyplot as plt
    y = ok["latency_s"].to_numpy(float)
    wl = [a.column for a in sweep.axes if a.param.section == "workload"]
    groups = list(ok.groupby(wl, sort=True).indices.items()) if wl else [((), np.arange(len(ok)))]
    shown = groups[:MAX_FRONTS]
    fig, ax = plt.subplots(figsize=(7, 4.8))
    front = np.zeros(len(ok), dtype=bool)
    for _, idx in groups:
        front[idx[pareto_mask(x[idx], y[idx])]] = True
    grey = np.flatnonzero(~front)
    if len(grey) > MAX_DRAWN:
        grey = np.random.default_rng(0).choice(grey, MAX_DRAWN, replace=False)
    ax.scatter(x[grey], y[grey] * 1e3, s=6, color="0.78", label=f"dominated ({int((~front).sum()):,})")
    for k, (key, idx) in enumerate(shown):
        on = idx[front[idx]]
        on = on[np.argsort(x[on])]
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(_value_label(c, v) for c, v in zip(wl, key)) or "Pareto front"
        ax.step(x[on], y[on] * 1e3, where="post", color=f"C{k}", lw=1)
        ax.scatter(x[on], y[on] * 1e3, s=14, color=f"C{k}", zorder=3, label=f"{label} ({len(on)} on the front)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("latency (ms)")
    if log_x:
        from matplotlib.ticker import FuncFormatter
        ax.set_xscale("log", base=log_x)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    if np.nanmax(y) > 10 * np.nanmin(y):
        ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    more = f" (fronts of the first {MAX_FRONTS} of {len(groups)} workloads drawn)" if len(groups) > MAX_FRONTS else ""
    ax.set_title(_title(sweep, what) + more, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _spread(values: np.ndarray, min_log2_gap: float = 0.45) -> np.ndarray:
    """Tick values at least `min_log2_gap` apart on a log2 axis (so their labels do not overlap)."""
    kept = []
    for v in values:
        if v > 0 and (not kept or np.log2(v / kept[-1]) >= min_log2_gap):
            kept.append(v)
    return np.array(kept)


def _short(column: str) -> str:
    """'arch.levels.L2.capacity_bytes' -> 'L2.capacity' (the unit goes into the axis label)."""
    for prefix in ("arch.levels.", "arch.", "workload."):
        if column.startswith(prefix):
            column = column[len(prefix):]
            break
    for suffix in ("_bytes_per_s", "_bytes", "_hz"):
        if column.endswith(suffix):
            return column[: -len(suffix)]
    return column


def _title(sweep, what: str) -> str:
    return f"{sweep.arch.name}, base {sweep.workload.label()}\n{what}"
