"""Peak resident memory of ``hf-lambda-gelu relufy`` on a 1M-line text file, beyond what the model run costs.

The corpus is read lazily (hf_lambda_gelu/relufy_corpus.py: memory-mapped Arrow files, ``Dataset.map``), so its
size should barely move the peak. Each run is the real CLI in a fresh process (its peak RSS read with
``os.wait4``), on a tiny model, for a few steps, the last tenth of the file held out for the fidelity report:

- a causal LM (tiny GPT-2; its training texts packed into blocks of ``--max-length``) and an encoder classifier
  (tiny BERT; one example a line);
- each on the big file and on a small one (1,000 lines): the small run's peak is the interpreter, the libraries
  and the model; the difference is what the corpus costs ("beyond the model").

``python benchmarks/relufy_memory.py`` (7 to 10 min on one core) writes benchmarks/results/relufy_memory.json;
``--quick`` (2,000 lines) is the smoke test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import RESULTS_DIR, format_table, machine_meta, output_path, write_json

MB = 2**20
WORDS = [f"w{i}" for i in range(1000)]  # a word-level vocabulary: every word is one token
MODELS = ("gpt2_causal_lm", "bert_classifier")


def _model(kind: str, folder: Path) -> int:
    """A tiny random model of ``kind`` and its word-level tokenizer saved in ``folder``; its weights' bytes."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    if kind == "gpt2_causal_lm":
        model = GPT2LMHeadModel(
            GPT2Config(
                vocab_size=len(vocab), n_embd=64, n_layer=2, n_head=2, n_positions=128, bos_token_id=2, eos_token_id=3
            )
        )
    else:
        config = BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=128, num_labels=2)  # fmt: skip
        model = BertForSequenceClassification(config)
    model.save_pretrained(folder)
    BertTokenizerFast(vocab=vocab).save_pretrained(folder)
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _corpus(path: Path, lines: int) -> None:
    """``lines`` lines of 4 to 16 random words, written a chunk at a time."""
    rng = random.Random(0)
    with path.open("w", encoding="utf-8") as f:
        for start in range(0, lines, 10_000):
            chunk = (" ".join(rng.choices(WORDS, k=rng.randint(4, 16))) for _ in range(min(10_000, lines - start)))
            f.write("\n".join(chunk) + "\n")


def _relufy(model_dir: Path, data: Path, out: Path, steps: int, tmp: Path) -> dict:
    """Run the CLI in a fresh process; its peak RSS (MiB), wall time and report."""
    cmd = [sys.executable, "-m", "hf_lambda_gelu.cli", "relufy", str(model_dir), str(out), "--data", str(data),
           "--max-steps", str(steps), "--batch-size", "32", "--max-length", "64"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "TMPDIR": str(tmp)}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (ru_maxrss: KiB on Linux)
    seconds = time.perf_counter() - start
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"relufy failed:\n{stdout[-2000:]}\n{stderr[-4000:]}")
    from hf_lambda_gelu.release.twin import FIDELITY_FILENAME

    report = json.loads((out / FIDELITY_FILENAME).read_text())
    return {"peak_rss_mib": usage.ru_maxrss / 1024, "seconds": seconds, "train_examples": report["training"]["train_examples"], "held_out": report.get("inputs") or report["examples"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 lines against 200 (smoke test, about a minute)")
    parser.add_argument("--out", type=Path, default=None, help="JSON output path (--quick: a new temporary file)")
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines of the big file (default 1,000,000)")
    parser.add_argument("--steps", type=int, default=5, help="training steps of each run (--max-steps)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    args = parser.parse_args()
    big, small = (2_000, 200) if args.quick else (args.lines, 1_000)
    out_path = output_path(args.out, args.quick, RESULTS_DIR / "relufy_memory.json")
    report = {"meta": machine_meta(args.quick), "lines": big, "baseline_lines": small, "steps": args.steps, "models": {}}  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory(prefix="relufy_memory_") as tmp:
        root = Path(tmp)
        files = {n: root / f"{n}.txt" for n in (small, big)}
        for n, path in files.items():
            _corpus(path, n)
        report["file_mib"] = files[big].stat().st_size / MB
        for kind in args.models:
            model_dir = root / kind
            weights = _model(kind, model_dir)
            runs = {
                n: _relufy(model_dir, path, root / f"out-{kind}-{n}", args.steps, root) for n, path in files.items()
            }
            beyond = runs[big]["peak_rss_mib"] - runs[small]["peak_rss_mib"]
            report["models"][kind] = {"weights_mib": weights / MB, "big": runs[big], "baseline": runs[small], "corpus_cost_mib": beyond}  # fmt: skip
            rows.append([kind, f"{big:,}", f"{runs[big]['train_examples']:,}", f"{runs[big]['peak_rss_mib']:.0f}",
                         f"{runs[small]['peak_rss_mib']:.0f}", f"{beyond:.0f}", f"{runs[big]['seconds']:.0f}"])  # fmt: skip
    header = ["model", "lines", "train examples", "peak RSS MiB", f"peak, {small:,} lines", "corpus cost MiB", "s"]
    print(format_table(header, rows))
    write_json(report, out_path)


if __name__ == "__main__":
    main()
