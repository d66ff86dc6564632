"""Helpers shared by the benchmark scripts: offline setup, shared CLI flags, run metadata, statistics,
text tables and JSON output.

Importing this module sets the Hugging Face offline variables (unless already set), so scripts import
it before transformers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

for _key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_key, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def add_common_args(parser: argparse.ArgumentParser, default_out: Path, default_threads: int | None) -> None:
    """``--quick``, ``--out`` and ``--threads``, the same in every benchmark script."""
    parser.add_argument("--quick", action="store_true", help="a few steps on tiny settings (smoke test, seconds)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"JSON output path (default {default_out}; with --quick a new temporary file)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=default_threads,
        help=f"torch intra-op threads (default {default_threads or 'torch: one per core'})",
    )


def output_path(out: Path | None, quick: bool, default: Path) -> Path:
    """``--out`` if given; else ``default`` (the committed results) for a full run and a new temporary
    file for ``--quick``, so that a smoke test never overwrites the committed full-run results."""
    if out is not None:
        return out
    if not quick:
        return default
    return Path(tempfile.mkdtemp(prefix="hf_lambda_gelu_bench_")) / default.name


def apply_threads(threads: int | None) -> None:
    """Set torch's intra-op thread count when one is given (None keeps torch's default)."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads={threads} is invalid: use a positive thread count.")
        torch.set_num_threads(threads)


def machine_meta(quick: bool) -> dict:
    """Where and how a benchmark ran: versions, CPU, threads, the exact command."""
    import transformers

    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
        "quick": quick,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": load_average(),
    }


def load_average() -> list[float] | None:
    """1/5/15-minute load averages (other processes competing for the cores), None where unavailable."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def mean_std(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) of the non-None values."""
    kept = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not kept:
        return {"mean": None, "std": None, "n": 0}
    std = statistics.stdev(kept) if len(kept) > 1 else 0.0
    return {"mean": statistics.fmean(kept), "std": std, "n": len(kept)}


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned first column, right-aligned others, widths fitted to the content."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first, *rest = (str(c) for c in cells)
        return "  ".join([first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(rest, widths[1:]))])

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def write_json(report: dict, path: Path) -> None:
    """Write ``report`` as indented JSON, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


def cpu_peak_bytes(run) -> int:
    """Most CPU-allocator bytes held at once during ``run()`` beyond those held before it.

    Read from the profiler's allocation events (RSS is not used: the allocator keeps freed pages).
    """
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation and node.extra_fields.device.type == "cpu":
            events.append((node.start_time_ns, node.extra_fields.alloc_size))
        stack.extend(node.children)
    live = peak = 0
    for _, size in sorted(events):
        live += size
        peak = max(peak, live)
    return int(peak)
