#!/usr/bin/env python3
"""Compile attnsim's bundled CUDA kernels and record what ptxas says about each one.

    python validate/build.py [--out DIR] [--arch sm_80,sm_90] [--jobs N] [--shared]

Each kernel family (validate/kernels/*.cu) is a set of C++ templates; the variant list below
names every instantiation (``flash_fwd_bf16_d128_m128_n64_w4_s2_causal``: family, dtype, head
dim, BLOCK_M, BLOCK_N, warps, stages, mask). For each translation unit this script writes a
small file that includes the family's source and lists its variants through the family's
``ATTNSIM_*_VARIANT`` macro (each one an ``extern "C" __global__`` entry named after the
variant, so ptxas reports readable names), compiles it once for all the requested archs with

    nvcc -O3 -std=c++17 -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -Xptxas -v -c

(the units run in parallel, ``--jobs``), parses ptxas' resource lines per entry function and
arch, and writes ``resources.json``: per kernel {sm_XX: {registers, smem_static_bytes,
spill_stores, spill_loads, stack_frame_bytes}, block: {template parameters},
smem_dynamic_bytes, variant, family}, plus "nvcc_version", "date", "archs", "nvcc_flags",
"build_seconds" and "sources_sha256".

Default output: validate/kernels/resources.json (the intermediates go to a temporary folder);
with ``--out DIR`` everything lands in DIR. ``--shared`` also links ``libattnsim_kernels.so``
(what ``python -m attnsim.validate.run_gpu`` loads with ctypes).

Exit codes: 0 ok; 1 a compile error (nvcc's stderr tail is printed); 2 bad arguments;
3 nvcc not found. Standard library only (no attnsim import), so it runs from any Python.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
KERNEL_DIR = HERE / "kernels"
DEFAULT_RESOURCES = KERNEL_DIR / "resources.json"
DEFAULT_ARCHS = ("sm_80", "sm_90")
NVCC_FLAGS = ("-O3", "-std=c++17")
LIBRARY_NAME = "libattnsim_kernels.so"

DTYPES = {"fp16": ("half", 2), "bf16": ("__nv_bfloat16", 2)}
MASKS = {"full": "attnsim::MASK_FULL", "causal": "attnsim::MASK_CAUSAL", "window": "attnsim::MASK_WINDOW",
         "block_sparse": "attnsim::MASK_BLOCK_SPARSE"}
# FlashAttention-2's forward tiles on sm80 (flash_fwd_launch_template.h): head dim -> (BLOCK_M, BLOCK_N, warps).
FA2_TILES = {64: (128, 128, 4), 128: (128, 64, 4)}
# (head_dim, BLOCK_M, BLOCK_N, warps, stages) compiled besides the FA2 defaults (bf16; full, causal).
EXTRA_FWD_TILES = ((128, 128, 64, 4, 1), (128, 128, 64, 4, 3), (128, 64, 64, 4, 2), (128, 128, 128, 8, 2),
                   (64, 128, 64, 4, 2))
NAIVE_TILE = {"block_m": 64, "block_n": 64, "block_k": 64, "warps": 4, "stages": 1}
DECODE_TILE = {"block_n": 128, "warps": 4, "stages": 2}
LINEAR_WARPS = 8


class BuildError(Exception):
    """A failed nvcc run: message is what to print; exit code 1."""


class NvccMissing(Exception):
    """No nvcc: exit code 3."""


@dataclass(frozen=True)
class Kernel:
    """One __global__ entry: its name, family and template parameters."""

    name: str
    family: str  # flash_fwd | flash_decode | flash_decode_combine | naive | linear_attn
    variant: str  # the variant it belongs to (naive: the three kernels share one)
    block: dict = field(hash=False, compare=False)
    smem_dynamic_bytes: int = 0


@dataclass(frozen=True)
class Unit:
    """One translation unit: a source to include and the macro lines that instantiate it."""

    name: str
    source: str  # file name in validate/kernels
    lines: tuple[str, ...]
    kernels: tuple[Kernel, ...]


# ---------------------------------------------------------------------------- the variant list

def flash_fwd_name(dtype: str, d: int, bm: int, bn: int, w: int, s: int, mask: str) -> str:
    return f"flash_fwd_{dtype}_d{d}_m{bm}_n{bn}_w{w}_s{s}_{mask}"


def flash_fwd_smem(dtype: str, d: int, bm: int, bn: int, s: int) -> int:
    """Q tile + `s` stages of K and V tiles: attnsim.mapping.kernel.smem_bytes_per_cta."""
    return (bm + 2 * s * bn) * d * DTYPES[dtype][1]


def flash_fwd_sub_n(d: int, bm: int, bn: int, w: int, mask: str) -> int:
    """Keys per softmax step inside a key tile: flash_fwd.cu's SUB_N (the same formula)."""
    mt = bm // w // 16
    budget = 144 if mask == "window" else 160
    for sub in (bn, 64, 32):
        if (sub == bn or bn % sub == 0) and mt * (d // 8 + sub // 8) * 4 <= budget:
            return sub
    return 16


def flash_fwd_kernels() -> list[Kernel]:
    out = []
    tiles = [(d, *FA2_TILES[d], 2) for d in (64, 128)]
    for d, bm, bn, w, s in tiles:
        for dtype in DTYPES:
            for mask in MASKS:
                name = flash_fwd_name(dtype, d, bm, bn, w, s, mask)
                block = {"block_m": bm, "block_n": bn, "warps": w, "stages": s, "head_dim": d, "dtype": dtype,
                         "mask": mask, "style": "fused", "sub_n": flash_fwd_sub_n(d, bm, bn, w, mask)}
                out.append(Kernel(name, "flash_fwd", name, block, flash_fwd_smem(dtype, d, bm, bn, s)))
    # A few more tilings of the commonest case (bf16, d128): stages and tile shape move
    # registers, shared memory and occupancy, which is what the model has to get right; and
    # d64 at d128's tile, to compare head dims at one tile.
    for d, bm, bn, w, s in EXTRA_FWD_TILES:
        for mask in ("full", "causal"):
            name = flash_fwd_name("bf16", d, bm, bn, w, s, mask)
            block = {"block_m": bm, "block_n": bn, "warps": w, "stages": s, "head_dim": d, "dtype": "bf16",
                     "mask": mask, "style": "fused", "sub_n": flash_fwd_sub_n(d, bm, bn, w, mask)}
            out.append(Kernel(name, "flash_fwd", name, block, flash_fwd_smem("bf16", d, bm, bn, s)))
    return out


def decode_name(dtype: str, d: int, bm: int) -> str:
    t = DECODE_TILE
    return f"flash_decode_{dtype}_d{d}_m{bm}_n{t['block_n']}_w{t['warps']}_s{t['stages']}"


def decode_kernels() -> list[Kernel]:
    out = []
    t = DECODE_TILE
    for d in (64, 128):
        for dtype in DTYPES:
            comb = f"flash_decode_combine_{dtype}_d{d}"
            for bm in (16, 64):
                name = decode_name(dtype, d, bm)
                block = {"block_m": bm, "block_n": t["block_n"], "warps": t["warps"], "stages": t["stages"],
                         "head_dim": d, "dtype": dtype, "mask": "full|causal", "style": "split_kv", "combine": comb}
                out.append(Kernel(name, "flash_decode", name, block, flash_fwd_smem(dtype, d, bm, t["block_n"],
                                                                                   t["stages"])))
            out.append(Kernel(comb, "flash_decode_combine", comb,
                              {"warps": 4, "head_dim": d, "dtype": dtype, "style": "combine"}, 0))
    return out


def naive_kernels() -> list[Kernel]:
    out = []
    for dtype in DTYPES:
        for s_dtype in (dtype, "fp32"):
            group = f"naive_{dtype}" + ("_s32" if s_dtype == "fp32" else "")
            suffix = group[len("naive_"):]
            for part in ("qk", "softmax", "pv"):
                block = {**NAIVE_TILE, "dtype": dtype, "s_dtype": s_dtype, "kernel": part, "style": "unfused",
                         "mask": "full|causal|window"}
                out.append(Kernel(f"naive_{part}_{suffix}", "naive", group, block, 0))
    return out


def linear_name(dtype: str, d: int, chunk: int) -> str:
    return f"linear_attn_{dtype}_d{d}_c{chunk}"


def linear_smem(dtype: str, d: int, chunk: int) -> int:
    return d * d * 4 + (chunk * 2 * d + d * (chunk + 2)) * DTYPES[dtype][1] + chunk * chunk * 4


def linear_kernels() -> list[Kernel]:
    out = []
    for d in (64, 128):
        for dtype in DTYPES:
            name = linear_name(dtype, d, 64)
            block = {"chunk": 64, "head_dim": d, "dtype": dtype, "warps": LINEAR_WARPS, "style": "linear"}
            out.append(Kernel(name, "linear_attn", name, block, linear_smem(dtype, d, 64)))
    return out


def _fwd_line(k: Kernel) -> str:
    b = k.block
    return (f"ATTNSIM_FLASH_FWD_VARIANT({k.name}, {DTYPES[b['dtype']][0]}, {b['head_dim']}, {b['block_m']}, "
            f"{b['block_n']}, {b['warps']}, {b['stages']}, {MASKS[b['mask']]})")


def units(jobs: int = 2) -> list[Unit]:
    """The translation units. flash_fwd (the heaviest) is dealt round-robin over `jobs` units so
    that parallel nvcc runs finish together; each other family is one unit."""
    out = []
    fwd = flash_fwd_kernels()
    n_fwd = max(1, min(jobs, len(fwd)))
    for i in range(n_fwd):
        ks = tuple(fwd[i::n_fwd])
        out.append(Unit(f"flash_fwd_{i}", "flash_fwd.cu", tuple(_fwd_line(k) for k in ks), ks))
    dec = decode_kernels()
    lines = []
    for k in dec:
        b = k.block
        t = DTYPES[b["dtype"]][0]
        if k.family == "flash_decode_combine":
            lines.append(f"ATTNSIM_FLASH_DECODE_COMBINE({k.name}, {t}, {b['head_dim']})")
    for k in dec:
        b = k.block
        if k.family == "flash_decode":
            lines.append(f"ATTNSIM_FLASH_DECODE_VARIANT({k.name}, {b['combine']}, {DTYPES[b['dtype']][0]}, "
                         f"{b['head_dim']}, {b['block_m']}, {b['block_n']}, {b['warps']}, {b['stages']})")
    out.append(Unit("flash_decode", "flash_decode.cu", tuple(lines), tuple(dec)))
    nv = naive_kernels()
    lines = []
    for group in dict.fromkeys(k.variant for k in nv):
        ks = {k.block["kernel"]: k for k in nv if k.variant == group}
        b = ks["qk"].block
        t = DTYPES[b["dtype"]][0]
        ts = "float" if b["s_dtype"] == "fp32" else t
        lines.append(f"ATTNSIM_NAIVE_VARIANT({group}, {ks['qk'].name}, {ks['softmax'].name}, {ks['pv'].name}, "
                     f"{t}, {ts})")
    out.append(Unit("naive_attention", "naive_attention.cu", tuple(lines), tuple(nv)))
    la = linear_kernels()
    out.append(Unit("linear_attention", "linear_attention.cu",
                    tuple(f"ATTNSIM_LINEAR_ATTN_VARIANT({k.name}, {DTYPES[k.block['dtype']][0]}, "
                          f"{k.block['head_dim']}, {k.block['chunk']})" for k in la), tuple(la)))
    return out


def all_kernels() -> list[Kernel]:
    return [k for u in units(1) for k in u.kernels]


def unit_source(u: Unit) -> str:
    return ("// Generated by validate/build.py: the instantiations of one translation unit.\n"
            f'#include "{u.source}"\n\n' + "\n".join(u.lines) + "\n")


# ---------------------------------------------------------------------------- nvcc

def find_nvcc(explicit: str | None = None) -> str:
    """nvcc from --nvcc, $NVCC, PATH, $CUDA_HOME/bin or /usr/local/cuda/bin; NvccMissing otherwise."""
    cands = [explicit, os.environ.get("NVCC"), shutil.which("nvcc")]
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            cands.append(str(Path(home) / "bin" / "nvcc"))
    for c in cands:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    raise NvccMissing("nvcc not found (looked at --nvcc, $NVCC, PATH, $CUDA_HOME/bin, /usr/local/cuda/bin): "
                      "the CUDA kernels need the CUDA toolkit to compile")


def nvcc_version(nvcc: str) -> str:
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"release [\d.]+, V([\d.]+)", out)
    return m.group(1) if m else out.strip().splitlines()[-1] if out.strip() else "unknown"


def parse_archs(text: str | list[str] | tuple[str, ...]) -> list[str]:
    items = text.split(",") if isinstance(text, str) else list(text)
    archs = [a.strip() for a in items if a.strip()]
    bad = [a for a in archs if not re.fullmatch(r"sm_\d{2,3}a?", a)]
    if bad or not archs:
        raise ValueError(f"--arch expects a comma-separated list like sm_80,sm_90; got {text!r}")
    for a in archs:
        if int(re.sub(r"\D", "", a)) < 80:
            raise ValueError(f"{a}: the kernels need sm_80 or newer (cp.async, bf16 mma.sync)")
    return archs


def gencode_flags(archs: list[str]) -> list[str]:
    flags = []
    for a in archs:
        num = a[3:]
        flags += ["-gencode", f"arch=compute_{num},code={a}"]
    return flags


def compile_command(nvcc: str, src: Path, obj: Path, archs: list[str], *, pic: bool = False,
                    verbose: bool = True) -> list[str]:
    cmd = [nvcc, *NVCC_FLAGS, *gencode_flags(archs), "-I", str(KERNEL_DIR)]
    if verbose:
        cmd += ["-Xptxas", "-v"]
    if pic:
        cmd += ["-Xcompiler", "-fPIC"]
    return cmd + ["-c", str(src), "-o", str(obj)]


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_units(nvcc: str, work: Path, archs: list[str], jobs: int, *, pic: bool = False,
              verbose: bool = True) -> tuple[dict[str, str], list[Path]]:
    """Write and compile every unit in parallel; returns ({unit: nvcc stderr}, object files)."""
    work.mkdir(parents=True, exist_ok=True)
    us = units(jobs)
    tasks = []
    for u in us:
        src = work / f"gen_{u.name}.cu"  # not the family's own file name: it includes that
        src.write_text(unit_source(u))
        tasks.append((u, src, work / f"gen_{u.name}.o"))

    def one(task):
        u, src, obj = task
        cmd = compile_command(nvcc, src, obj, archs, pic=pic, verbose=verbose)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        return u, cmd, proc

    logs, objs = {}, []
    # flash_fwd units first: they are the long ones
    with cf.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for u, cmd, proc in pool.map(one, tasks):
            if proc.returncode != 0:
                raise BuildError(f"nvcc failed on {u.name} ({u.source}), exit {proc.returncode}:\n  "
                                 + " ".join(cmd) + "\n" + _tail(proc.stderr + proc.stdout))
            logs[u.name] = proc.stderr + proc.stdout
            objs.append(work / f"gen_{u.name}.o")
    return logs, objs


# ---------------------------------------------------------------------------- ptxas output

_ENTRY = re.compile(r"Compiling entry function '(?P<name>[^']+)' for '(?P<arch>sm_\w+)'")
_PROPS = re.compile(r"Function properties for (?P<name>\S+)")
_FRAME = re.compile(r"(?P<stack>\d+) bytes stack frame, (?P<st>\d+) bytes spill stores, (?P<ld>\d+) bytes spill loads")
_USED = re.compile(r"Used (?P<regs>\d+) registers")
_SMEM = re.compile(r"(?P<smem>\d+) bytes smem")


def parse_ptxas(text: str) -> dict[str, dict[str, dict[str, int]]]:
    """ptxas -v output -> {entry: {arch: {registers, smem_static_bytes, spill_stores, spill_loads,
    stack_frame_bytes}}}. Lines of non-entry functions (their 'Function properties') are skipped."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    cur: dict[str, int] | None = None
    cur_name = None
    props_for = None
    for line in text.splitlines():
        m = _ENTRY.search(line)
        if m:
            cur_name = m["name"]
            cur = out.setdefault(cur_name, {}).setdefault(m["arch"], {
                "registers": 0, "smem_static_bytes": 0, "spill_stores": 0, "spill_loads": 0, "stack_frame_bytes": 0})
            props_for = None
            continue
        m = _PROPS.search(line)
        if m:
            props_for = m["name"]
            continue
        m = _FRAME.search(line)
        if m and cur is not None and props_for == cur_name:
            cur["stack_frame_bytes"] = int(m["stack"])
            cur["spill_stores"] = int(m["st"])
            cur["spill_loads"] = int(m["ld"])
            continue
        m = _USED.search(line)
        if m and cur is not None:
            cur["registers"] = int(m["regs"])
            s = _SMEM.search(line)
            cur["smem_static_bytes"] = int(s["smem"]) if s else 0
            cur = None  # the entry's record is complete
    return out


def sources_sha256() -> dict[str, str]:
    files = sorted(p for p in KERNEL_DIR.iterdir() if p.suffix in (".cu", ".cuh"))
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def resources_record(parsed: dict, archs: list[str], nvcc_ver: str, seconds: float) -> dict:
    """resources.json: one entry per kernel of the variant list, plus the build's metadata."""
    res: dict = {}
    missing = []
    for k in all_kernels():
        entry = {"variant": k.variant, "family": k.family, "block": dict(k.block),
                 "smem_dynamic_bytes": k.smem_dynamic_bytes}
        for a in archs:
            rec = parsed.get(k.name, {}).get(a)
            if rec is None:
                missing.append(f"{k.name} ({a})")
                continue
            entry[a] = rec
        res[k.name] = entry
    if missing:
        raise BuildError("ptxas reported no resource usage for: " + ", ".join(missing[:10])
                         + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
    res["nvcc_version"] = nvcc_ver
    res["date"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    res["archs"] = list(archs)
    res["nvcc_flags"] = " ".join([*NVCC_FLAGS, *gencode_flags(archs), "-Xptxas", "-v", "-c"])
    res["build_seconds"] = round(seconds, 1)
    res["sources_sha256"] = sources_sha256()
    return res


def build(out_dir: Path | None = None, archs=DEFAULT_ARCHS, jobs: int | None = None, nvcc: str | None = None,
          shared: bool = False) -> dict:
    """Compile everything, write resources.json; returns the record. Raises NvccMissing, BuildError."""
    archs = parse_archs(archs)
    nvcc = find_nvcc(nvcc)
    jobs = jobs or max(1, os.cpu_count() or 1)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="attnsim-kernels-") as tmp:
        work = Path(out_dir) if out_dir is not None else Path(tmp)
        logs, objs = run_units(nvcc, work, archs, jobs, pic=shared)
        parsed: dict = {}
        for text in logs.values():
            for name, per_arch in parse_ptxas(text).items():
                parsed.setdefault(name, {}).update(per_arch)
        if shared:
            link_shared(nvcc, objs, work / LIBRARY_NAME, archs)
        seconds = time.perf_counter() - t0
        res = resources_record(parsed, archs, nvcc_version(nvcc), seconds)
        dest = (Path(out_dir) if out_dir is not None else KERNEL_DIR) / "resources.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(json.dumps(res, indent=1, sort_keys=False) + "\n")
    return res


def link_shared(nvcc: str, objs: list[Path], lib: Path, archs: list[str]) -> Path:
    cmd = [nvcc, "-shared", *gencode_flags(archs), "-o", str(lib), *map(str, objs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"linking {lib.name} failed, exit {proc.returncode}:\n  " + " ".join(cmd) + "\n"
                         + _tail(proc.stderr + proc.stdout))
    return lib


def build_shared_library(out_dir: Path, archs, nvcc: str | None = None, jobs: int | None = None) -> Path:
    """Only the shared library (no ptxas report): what the GPU runner needs."""
    archs = parse_archs(archs)
    nvcc = find_nvcc(nvcc)
    out_dir = Path(out_dir)
    _, objs = run_units(nvcc, out_dir, archs, jobs or max(1, os.cpu_count() or 1), pic=True, verbose=False)
    return link_shared(nvcc, objs, out_dir / LIBRARY_NAME, archs)


def summary_table(res: dict, archs: list[str]) -> str:
    rows = [("kernel", *[f"{a} regs/spill" for a in archs], "smem static", "smem dynamic")]
    for name, e in res.items():
        if not isinstance(e, dict) or "block" not in e:
            continue
        cells = [name]
        for a in archs:
            r = e[a]
            spill = r["spill_stores"] + r["spill_loads"]
            cells.append(f"{r['registers']}" + (f" (spill {r['spill_stores']}/{r['spill_loads']} B)" if spill else ""))
        cells += [str(e[archs[0]]["smem_static_bytes"]), str(e["smem_dynamic_bytes"])]
        rows.append(tuple(cells))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None,
                    help="folder for resources.json and the intermediates (default: validate/kernels/resources.json, "
                         "intermediates in a temporary folder)")
    ap.add_argument("--arch", default=",".join(DEFAULT_ARCHS), help="comma-separated, e.g. sm_80,sm_90")
    ap.add_argument("--jobs", type=int, default=None, help="parallel nvcc runs (default: CPU count)")
    ap.add_argument("--nvcc", default=None, help="path to nvcc (default: PATH, $CUDA_HOME/bin, /usr/local/cuda/bin)")
    ap.add_argument("--shared", action="store_true", help=f"also link {LIBRARY_NAME} (needs --out)")
    ap.add_argument("--quiet", action="store_true", help="no table")
    args = ap.parse_args(argv)
    try:
        archs = parse_archs(args.arch)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.shared and args.out is None:
        print("error: --shared needs --out DIR (where the library goes)", file=sys.stderr)
        return 2
    try:
        res = build(args.out, archs, args.jobs, args.nvcc, shared=args.shared)
    except NvccMissing as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    dest = (args.out or KERNEL_DIR) / "resources.json"
    if not args.quiet:
        print(summary_table(res, archs))
    n = sum(1 for e in res.values() if isinstance(e, dict) and "block" in e)
    print(f"{n} kernels for {', '.join(archs)} in {res['build_seconds']} s (nvcc {res['nvcc_version']}) -> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
