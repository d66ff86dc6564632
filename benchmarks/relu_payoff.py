"""What the ReLU release buys at deployment, measured: int8 quantization and activation sparsity.

Two real tasks (data and checkpoints from ``reluization.py``), each fine-tuned twice from the same
GELU checkpoint with the same data, steps and learning rate:

- ``gelu``: the GELU reference (plain ``Trainer``);
- ``relu``: the ReLU release: ``LambdaGELUTrainer`` with the package defaults, as a user gets it
  (λ pinned and hardened to λ* ≈ 170 in the first 10 % of the steps, then ReLU forwards with
  distillation to the original, swapped to ``nn.ReLU``). ``results/relu_payoff.json`` (run 4) has these
  defaults; ``results/relu_payoff_run1-3.json`` were written with the 0.1.0 defaults (λ learned for 75 %
  of the steps, hardened over the last 25 %), see benchmarks/README.md.

Then:

1. **int8** (``sentiment_minilm``, the real all-MiniLM-L6-v2 on the VADER lexicon): both models are
   exported to ONNX (the ReLU one through the package's audited ``export_onnx``), quantized with ONNX
   Runtime's ``quantize_dynamic`` (``hf_lambda_gelu.release.export.quantize_int8``: int8 weights, dynamic int8 activations), and evaluated on the same
   eval set in fp32 and int8; ONNX Runtime CPU latency at batch 1 and 32 for the four graphs, and the
   ``Erf`` nodes left in each graph.
2. **sparsity** (both tasks): ``hf_lambda_gelu.release.sparsity.measure_sparsity`` on the eval set.
3. **does sparsity buy speed** (``docstrings_gpt2`` batch-1 greedy decoding with a KV cache, and the
   MiniLM classifier at batch 1): PyTorch eager GELU vs dense ReLU vs a sparse MLP path that, per
   forward, keeps only the rows of the down-projection whose activation is non-zero (for a single
   token: per token; for a sequence: the union over its tokens) and multiplies the gathered rows.
   The bound: the same run with the down-projection removed (its output replaced by its bias) gives
   the time T_skip of everything else; with the measured fraction z of zeros, an ideal sparse kernel
   takes T_skip + (1 − z)·(T_dense − T_skip). Outputs of the sparse path are compared with dense ReLU
   (greedy tokens identical, max |Δ logits|). The sparse path ships in the package only if it is
   ≥ 1.2× faster end to end at batch-1 decoding with identical outputs (≤ 1e-5).

Threads: one torch thread and one ONNX Runtime intra-op thread (the machine is shared; latencies are
medians of repeated runs, and the JSON records the load average).

Usage::

    python benchmarks/relu_payoff.py                          # full run, writes results/relu_payoff.json
    python benchmarks/relu_payoff.py --quick                  # smoke test, writes to a temp file
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import tempfile
import time
from pathlib import Path

import bench_common as common
import numpy as np
import reluization
import torch
from torch import nn
from transformers import logging as hf_logging
from transformers.pytorch_utils import Conv1D

from hf_lambda_gelu import swap_modules
from hf_lambda_gelu.release.export import export_graph, export_onnx, quantize_int8
from hf_lambda_gelu.release.sparsity import measure_sparsity

DEFAULT_OUT = common.RESULTS_DIR / "relu_payoff.json"
#: λ-GELU settings of the ReLU release on top of LambdaGELUTrainingArguments' defaults (none: the defaults).
RELU_SETTINGS: dict = {}
SHIP_SPEEDUP = 1.2
SHIP_TOLERANCE = 1e-5
FULL = {"reps": 7, "latency_batches": 20, "prompts": 8, "new_tokens": 48, "prompt_len": 16}
QUICK = {"reps": 2, "latency_batches": 2, "prompts": 2, "new_tokens": 8, "prompt_len": 8}


# -- the sparse down-projection -------------------------------------------------------------------
class SparseDownProjection(nn.Module):
    """``y = h @ W + b`` over the neurons that are non-zero in some row of ``h`` only (gathered rows of W).

    ``mode="skip"`` drops the product entirely (output = bias): it times everything but the
    down-projection, for the bound; its outputs are wrong on purpose.
    """

    def __init__(self, weight_in_out: torch.Tensor, bias: torch.Tensor | None, mode: str = "sparse") -> None:
        super().__init__()
        self.register_buffer("weight", weight_in_out.detach().contiguous())  # (neurons, out): rows per neuron
        self.register_buffer("bias", bias.detach().clone() if bias is not None else torch.zeros(self.weight.shape[1]))
        self.mode = mode

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        rows = h.reshape(-1, h.shape[-1])
        if self.mode == "skip":
            out = self.bias.expand(rows.shape[0], -1)
        else:
            keep = (rows != 0).any(0).nonzero().squeeze(1)
            out = torch.addmm(self.bias, rows.index_select(1, keep), self.weight.index_select(0, keep))
        return out.reshape(*h.shape[:-1], out.shape[-1])


def _down_projection(module: nn.Module, name: str, mode: str) -> nn.Module | None:
    """GPT-2's ``mlp.c_proj`` (Conv1D, weight (in, out)) and BERT's ``output.dense`` (Linear, weight (out, in))."""
    if isinstance(module, Conv1D) and name.endswith("mlp.c_proj"):
        return SparseDownProjection(module.weight, module.bias, mode)
    if isinstance(module, nn.Linear) and name.endswith("output.dense") and ".attention." not in name:
        return SparseDownProjection(module.weight.t(), module.bias, mode)
    return None


def with_sparse_mlp(model: nn.Module, mode: str = "sparse") -> nn.Module:
    """A copy of ``model`` whose MLP down-projections are :class:`SparseDownProjection` (via the package walker)."""
    model = copy.deepcopy(model)
    swaps = swap_modules(model, lambda module, name: _down_projection(module, name, mode))
    if not swaps:
        raise ValueError(f"No MLP down-projection found in {type(model).__name__}.")
    return model


# -- timing --------------------------------------------------------------------------------------
def median_seconds(runs: dict, reps: int) -> dict:
    """Median wall time of each run; the runs are interleaved (round robin) so load changes hit all alike."""
    times: dict = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm-up
    for _ in range(reps):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


# -- fine-tunes ----------------------------------------------------------------------------------
def fine_tune_pair(task: reluization.Task) -> dict[str, nn.Module]:
    """The GELU reference and the ReLU release, fine-tuned from the same checkpoint (seed 0)."""
    models = {}
    for arm, settings in (("gelu", None), ("relu", RELU_SETTINGS)):
        t0 = time.perf_counter()
        model = task.checkpoint(0)
        reluization._finetune(task, model, 0, settings)
        models[arm] = model.eval()
        print(f"[{task.name}] {arm} fine-tuned in {time.perf_counter() - t0:.0f} s", flush=True)
    return models


def _batches(task: reluization.Task, batch_size: int) -> list[dict[str, torch.Tensor]]:
    return [task.collator(task.eval[i : i + batch_size]) for i in range(0, len(task.eval), batch_size)]


# -- 1. int8 -------------------------------------------------------------------------------------
def _ort_session(path: Path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _ort_inputs(batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {"input_ids": batch["input_ids"].numpy(), "attention_mask": batch["attention_mask"].numpy()}


def _erf_nodes(path: Path) -> dict[str, int]:
    import onnx

    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    return {op: ops.count(op) for op in ("Erf", "Gelu", "FastGelu", "Relu") if op in ops}


def int8_section(task: reluization.Task, models: dict[str, nn.Module], settings: dict, folder: Path) -> dict:
    """fp32 vs int8 accuracy and ONNX Runtime latency (batch 1 and 32) of the GELU and ReLU classifiers."""
    eval_batches = _batches(task, 64)
    example = {k: v for k, v in task.collator(task.eval[:4]).items() if k in ("input_ids", "attention_mask")}
    latency_sets = {b: _batches(task, b)[: settings["latency_batches"]] for b in (1, 32)}
    out: dict = {}
    runs: dict = {}
    for arm, model in models.items():
        fp32 = folder / arm / "model.onnx"
        if arm == "relu":
            audit = export_onnx(model, fp32.parent, inputs=example)
            out["relu_export_audit"] = {k: audit[k] for k in ("opset", "forbidden_ops_found", "parity", "passed")}
        else:
            fp32.parent.mkdir(parents=True, exist_ok=True)
            export_graph(model, fp32, example)
            export_graph(model, fp32.with_name("opset18.onnx"), example, opset=18)  # GELU below opset 20: Erf
            out["gelu_opset18_graph_ops"] = _erf_nodes(fp32.with_name("opset18.onnx"))
        int8 = folder / arm / "model.int8.onnx"
        quantize_int8(fp32, int8)
        for precision, path in (("fp32", fp32), ("int8", int8)):
            session = _ort_session(path)
            correct = n = 0
            for batch in eval_batches:
                logits = session.run(None, _ort_inputs(batch))[0]
                correct += int((logits.argmax(-1) == batch["labels"].numpy()).sum())
                n += len(logits)
            out[f"{arm}_{precision}"] = {
                "accuracy": 100.0 * correct / n,
                "graph_ops": _erf_nodes(path),
                "size_mb": path.stat().st_size / 1e6,
            }
            for size, batches in latency_sets.items():
                runs[(f"{arm}_{precision}", size)] = lambda s=session, bs=batches: [
                    s.run(None, _ort_inputs(b)) for b in bs
                ]
    for (key, size), seconds in median_seconds(runs, settings["reps"]).items():
        out[key][f"latency_ms_batch{size}"] = 1e3 * seconds / len(latency_sets[size])
    for arm in models:
        for size in (1, 32):
            key = f"latency_ms_batch{size}"
            out[f"{arm}_int8_speedup_batch{size}"] = out[f"{arm}_fp32"][key] / out[f"{arm}_int8"][key]
    return out


# -- 3. sparse MLP -------------------------------------------------------------------------------
def _bound(dense: float, skip: float, zeros: float) -> dict:
    ideal = skip + (1.0 - zeros) * (dense - skip)
    return {
        "down_projection_share": (dense - skip) / dense,
        "ideal_sparse_seconds": ideal,
        "bound_speedup": dense / ideal,
    }


def speed_variants(models: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """GELU, dense ReLU, sparse ReLU, and ReLU without its down-projection (for the bound)."""
    return {
        "gelu": models["gelu"],
        "relu_dense": models["relu"],
        "relu_sparse": with_sparse_mlp(models["relu"]),
        "relu_no_down_projection": with_sparse_mlp(models["relu"], "skip"),
    }


def decode_section(task: reluization.Task, models: dict[str, nn.Module], zeros: float, settings: dict) -> dict:
    """Batch-1 greedy decoding: GELU vs dense ReLU vs sparse ReLU (and the skip run for the bound)."""
    relu, variants = models["relu"], speed_variants(models)
    n, length = settings["new_tokens"], settings["prompt_len"]
    prompts = [task.eval[i]["input_ids"][:length][None] for i in range(settings["prompts"])]

    def generate(model: nn.Module, prompt: torch.Tensor):
        return model.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n, do_sample=False,
            pad_token_id=0, output_logits=True, return_dict_in_generate=True,
        )  # fmt: skip

    with torch.inference_mode():
        outputs = {name: [generate(m, p) for p in prompts] for name, m in variants.items()}
        runs = {name: (lambda m=m: [generate(m, p) for p in prompts]) for name, m in variants.items()}
        seconds = {name: s / (len(prompts) * n) for name, s in median_seconds(runs, settings["reps"]).items()}
        full = torch.stack([b["input_ids"] for b in task.eval[:8]])
        logits_diff_full = float((variants["relu_sparse"](full).logits - relu(full).logits).abs().max())
    dense, sparse = outputs["relu_dense"], outputs["relu_sparse"]
    same_tokens = all(torch.equal(d.sequences, s.sequences) for d, s in zip(dense, sparse))
    step_diff = max(float((a - b).abs().max()) for d, s in zip(dense, sparse) for a, b in zip(d.logits, s.logits))
    max_diff = max(step_diff, logits_diff_full)
    result = {
        "ms_per_token": {name: 1e3 * s for name, s in seconds.items()},
        "relu_dense_vs_gelu_speedup": seconds["gelu"] / seconds["relu_dense"],
        "sparse_vs_dense_speedup": seconds["relu_dense"] / seconds["relu_sparse"],
        "identical_greedy_tokens": same_tokens,
        "max_abs_logit_diff_sparse_vs_dense": max_diff,
        "zeros_per_token": zeros,
        **_bound(seconds["relu_dense"], seconds["relu_no_down_projection"], zeros),
    }
    result["ship_sparse_path"] = bool(
        result["sparse_vs_dense_speedup"] >= SHIP_SPEEDUP and same_tokens and max_diff <= SHIP_TOLERANCE
    )
    return result


def classifier_section(
    task: reluization.Task, models: dict[str, nn.Module], zeros: dict[int, float], settings: dict
) -> dict:
    """MiniLM classifier, PyTorch eager, batch 1 and 32: GELU vs dense ReLU vs sparse ReLU (union of tokens).

    ``zeros[size]``: the fraction of neurons zero for every token of a batch of that size (the bound's z).
    """
    relu, variants = models["relu"], speed_variants(models)
    result: dict = {}
    with torch.inference_mode():
        for size in (1, 32):
            batches = [
                {k: v for k, v in b.items() if k != "labels"}
                for b in _batches(task, size)[: settings["latency_batches"]]
            ]
            runs = {name: (lambda m=m, bs=batches: [m(**b) for b in bs]) for name, m in variants.items()}
            seconds = {name: s / len(batches) for name, s in median_seconds(runs, settings["reps"]).items()}
            diff = max(float((variants["relu_sparse"](**b).logits - relu(**b).logits).abs().max()) for b in batches)
            result[f"batch{size}"] = {
                "ms_per_batch": {name: 1e3 * s for name, s in seconds.items()},
                "relu_dense_vs_gelu_speedup": seconds["gelu"] / seconds["relu_dense"],
                "sparse_vs_dense_speedup": seconds["relu_dense"] / seconds["relu_sparse"],
                "max_abs_logit_diff_sparse_vs_dense": diff,
                "zeros_whole_batch": zeros[size],
                **_bound(seconds["relu_dense"], seconds["relu_no_down_projection"], zeros[size]),
            }
    return result


# -- main ----------------------------------------------------------------------------------------
def sparsity_of(task: reluization.Task, model: nn.Module, batch_size: int) -> dict:
    report = measure_sparsity(model, _batches(task, batch_size), data=task.description)
    return report.to_dict()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_args(parser, DEFAULT_OUT, default_threads=1)
    parser.add_argument(
        "--tasks", nargs="+", choices=("sentiment_minilm", "docstrings_gpt2"),
        default=["sentiment_minilm", "docstrings_gpt2"], help="tasks to run",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.out = common.output_path(args.out, args.quick, DEFAULT_OUT)
    common.apply_threads(args.threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("hf_lambda_gelu").setLevel(logging.ERROR)
    settings = QUICK if args.quick else FULL
    report = {"meta": common.machine_meta(args.quick), "relu_settings": RELU_SETTINGS, "settings": settings}
    start = time.perf_counter()
    tables = []
    with tempfile.TemporaryDirectory(prefix="relu_payoff_onnx_") as folder:
        for name in args.tasks:
            task = reluization.TASK_BUILDERS[name](args.quick)
            models = fine_tune_pair(task)
            entry = {
                "description": task.description,
                "accuracy": {arm: reluization.evaluate(m, task)["accuracy"] for arm, m in models.items()},
                "sparsity": sparsity_of(task, models["relu"], 32),
                "sparsity_batch1_aggregated": sparsity_of(task, models["relu"], 1)["mean_aggregated_sparsity"],
            }
            zeros = entry["sparsity"]["mean_token_sparsity"]
            if name == "sentiment_minilm":
                entry["int8"] = int8_section(task, models, settings, Path(folder) / name)
                whole_batch = {
                    1: entry["sparsity_batch1_aggregated"],
                    32: entry["sparsity"]["mean_aggregated_sparsity"],
                }
                entry["speed"] = classifier_section(task, models, whole_batch, settings)
            else:
                entry["speed"] = decode_section(task, models, zeros, settings)
            report[name] = entry
            tables.append(format_task(name, entry))
            print(tables[-1], flush=True)
    report["meta"]["runtime_s"] = time.perf_counter() - start
    report["meta"]["load_average_at_end"] = common.load_average()
    common.write_json(report, args.out)
    return 0


def format_task(name: str, entry: dict) -> str:
    lines = [f"== {name}: {entry['description']}"]
    acc = entry["accuracy"]
    s = entry["sparsity"]
    lines.append(
        f"accuracy % (PyTorch): GELU {acc['gelu']:.2f}, ReLU {acc['relu']:.2f}; ReLU zeros per token "
        f"{100 * s['mean_token_sparsity']:.1f} %, zero for a whole batch of {s['batch_size']} "
        f"{100 * s['mean_aggregated_sparsity']:.1f} %, for one sequence {100 * entry['sparsity_batch1_aggregated']:.1f} %"
    )
    if "int8" in entry:
        q = entry["int8"]
        rows = [
            [
                f"{arm} {p}",
                f"{q[f'{arm}_{p}']['accuracy']:.2f}",
                f"{q[f'{arm}_{p}']['latency_ms_batch1']:.2f}",
                f"{q[f'{arm}_{p}']['latency_ms_batch32']:.1f}",
                f"{q[f'{arm}_{p}']['size_mb']:.1f}",
                str(q[f"{arm}_{p}"]["graph_ops"]),
            ]
            for arm in ("gelu", "relu")
            for p in ("fp32", "int8")
        ]
        header = ["ONNX Runtime", "accuracy %", "ms batch 1", "ms batch 32", "MB", "activation ops"]
        lines.append(common.format_table(header, rows))
        lines.append(
            "int8 speedup: "
            + ", ".join(
                f"{arm} batch {b} {q[f'{arm}_int8_speedup_batch{b}']:.2f}×" for arm in ("gelu", "relu") for b in (1, 32)
            )
        )
    speed = entry["speed"]
    parts = [("batch-1 greedy decoding", speed, "ms_per_token")] if "ms_per_token" in speed else [
        (f"classifier {k.replace('batch', 'batch ')}", v, "ms_per_batch") for k, v in speed.items()
    ]  # fmt: skip
    for label, part, unit in parts:
        ms = part[unit]
        lines.append(
            f"{label} (PyTorch eager, {unit.replace('_', ' ')}): GELU {ms['gelu']:.3f}, ReLU dense {ms['relu_dense']:.3f}, "
            f"ReLU sparse {ms['relu_sparse']:.3f}, no down-projection {ms['relu_no_down_projection']:.3f}; "
            f"sparse/dense {part['sparse_vs_dense_speedup']:.2f}× vs bound {part['bound_speedup']:.2f}× "
            f"(down-projection {100 * part['down_projection_share']:.0f} % of the time); "
            f"max |Δ logits| {part['max_abs_logit_diff_sparse_vs_dense']:.2g}"
            + (f"; identical tokens {part['identical_greedy_tokens']}; ship: {part['ship_sparse_path']}" if "ship_sparse_path" in part else "")
        )  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
