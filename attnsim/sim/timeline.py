"""Draw a cycle-level GPU simulation's timeline: per-SM pipe activity and L2/HBM bandwidth.

    >>> from attnsim.sim.gpu import simulate
    >>> from attnsim.sim.timeline import plot_timeline
    >>> plot_timeline(simulate("h100_sxm5_80gb", w, "flash3", timeline=True), "timeline.png")

Top: a Gantt chart, one row per SM, split into its three pipes (tensor, softmax, shared
memory); a pipe's color is as strong as the fraction of each time bin it was busy (the runs
are millions of tile ops, so they are binned rather than drawn one bar each). Bottom: the
bytes per second the L2 and HBM servers moved in each bin, against their sustained limits.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

PIPE_COLORS = {"tensor": (0.12, 0.47, 0.71), "softmax": (1.0, 0.5, 0.05), "smem": (0.17, 0.63, 0.17)}


def plot_timeline(sim, path, *, bins: int = 1000, max_sms: int | None = None) -> Path:
    """Write the timeline of ``sim`` (a SimResult made with ``timeline=True``) as a PNG.
    ``max_sms``: draw only the first SMs (default all). Returns the path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    tl = sim.timeline
    if tl is None:
        raise ValueError("this SimResult has no timeline: simulate(..., timeline=True)")
    n_sm = tl.sms if max_sms is None else min(max_sms, tl.sms)
    busy = tl.busy(bins)[:n_sm]  # [sm, pipe, bin]
    colors = np.array(list(PIPE_COLORS.values()))  # [pipe, rgb]
    # one image row per (SM, pipe): white blended toward the pipe's color by its busy fraction
    frac = busy.reshape(n_sm * 3, bins)[:, :, None]
    rgb = 1.0 - frac * (1.0 - np.tile(colors, (n_sm, 1))[:, None, :])
    t_ms = tl.t_end / tl.clock_hz * 1e3

    gantt_in = min(9.0, 1.5 + 0.02 * 3 * n_sm)  # inches for the Gantt rows
    fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(12, gantt_in + 3.0), sharex=True,
                                   gridspec_kw={"height_ratios": [gantt_in, 2.5]})
    ax0.imshow(rgb, aspect="auto", interpolation="antialiased", extent=(0, t_ms, n_sm, 0))
    ax0.set_ylabel("SM")
    ax0.set_title(f"{sim.result.workload} on {sim.result.arch} [{sim.result.mapping}], cycle-level")
    if tl.t_main < tl.t_end:
        for ax in (ax0, ax1):
            ax.axvline(tl.t_main / tl.clock_hz * 1e3, color="k", lw=0.8, ls=":")
    ax0.legend(handles=[Patch(color=c, label=n) for n, c in PIPE_COLORS.items()], loc="upper right",
               fontsize=8, ncol=3)
    for level, color in (("HBM", "tab:red"), ("L2", "tab:purple")):
        edges, bw = tl.bandwidth(level, bins)
        ax1.step(edges[:-1] * 1e3, bw / 1e12, where="post", color=color, lw=0.9, label=f"{level} used")
    ax1.set_xlabel("time (ms)")
    ax1.set_ylabel("TB/s")
    ax1.legend(loc="upper right", fontsize=8)
    ax1.set_xlim(0, t_ms)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
