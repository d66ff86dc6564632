"""The fresh-process side of the release gate (:mod:`hf_lambda_gelu.release.gate`).

Run as a script (``python reload_worker.py [--with-package]``), it serves requests on stdin: each
names a jobs file; it reloads each saved folder with its transformers class, runs the saved inputs
through it and writes what came back (output tensors, activation module types, λ values, load
warnings) to the results file. The stock worker imports only torch and transformers (checked), as
any user loading a release; the ``--with-package`` worker imports ``hf_lambda_gelu`` first (λ-GELU
round trips).

This file must not import the package: it is the outsider's view. It classifies modules with the package's
one classifier, ``hf_lambda_gelu/gelu_kinds.py`` (torch only), loaded by its file path.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import torch


def _load_gelu_kinds():
    """``hf_lambda_gelu/gelu_kinds.py`` (torch only), loaded by its path: importing it would import the package."""
    path = Path(__file__).resolve().parent.parent / "gelu_kinds.py"
    spec = importlib.util.spec_from_file_location("hf_lambda_gelu_reload_worker_gelu_kinds", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gelu_kinds = _load_gelu_kinds()


def flatten_outputs(output: Any) -> list[torch.Tensor]:
    """Every floating tensor of a model output, in a fixed order (ModelOutput fields, tuples, dicts)."""
    if isinstance(output, torch.Tensor):
        return [output.detach().float().cpu()] if output.is_floating_point() else []
    if isinstance(output, dict):  # ModelOutput is a dict of its non-None fields, in declaration order
        return [t for value in output.values() for t in flatten_outputs(value)]
    if isinstance(output, (tuple, list)):
        return [t for value in output for t in flatten_outputs(value)]
    return []  # caches and other objects


def activation_types(model: torch.nn.Module) -> dict[str, str]:
    """Name → class name of every activation module (ReLU, λ-GELU, GELU flavors, others: ``gelu_kinds``)."""
    return {
        name: type(module).__name__
        for name, module in model.named_modules()
        if gelu_kinds.activation_kind(module) is not None
    }


def lambda_values(model: torch.nn.Module) -> dict[str, list[float]]:
    """Name → λ values of every λ-GELU module (empty without the package)."""
    return {
        name: module.lambda_.detach().double().flatten().tolist()
        for name, module in model.named_modules()
        if gelu_kinds.activation_kind(module) == gelu_kinds.LAMBDA_GELU
    }


def _run(job: dict[str, Any]) -> dict[str, Any]:
    import transformers

    try:
        model_cls = getattr(transformers, job["model_class"])
        dtype = getattr(torch, job.get("dtype", "float32"))
        model, info = model_cls.from_pretrained(job["folder"], output_loading_info=True, dtype=dtype)
        model.eval()
        inputs = torch.load(job["inputs"], weights_only=True)
        with torch.no_grad():
            outputs = flatten_outputs(model(**inputs))
        return {
            "outputs": outputs,
            "activations": activation_types(model),
            "lambdas": lambda_values(model),
            "unexpected_keys": sorted(info.get("unexpected_keys") or []),
            "missing_keys": sorted(info.get("missing_keys") or []),
            "error": None,
        }
    except Exception as err:  # noqa: BLE001 - reported back to the caller, one job at a time
        return {"error": f"{type(err).__name__}: {err}"}


def serve(with_package: bool) -> None:
    """Answer requests on stdin, one per line: ``JOBS.json<TAB>RESULTS.pt``; reply ``done`` on stdout."""
    torch.set_num_threads(1)  # a small batch: more threads only compete with the caller's (a training run)
    if with_package:
        import hf_lambda_gelu  # noqa: F401 - registers λ-GELU for the round-trip jobs
    elif "hf_lambda_gelu" in sys.modules:
        raise RuntimeError("hf_lambda_gelu is imported in the stock-transformers reload worker")
    for line in sys.stdin:
        jobs_path, results_path = line.rstrip("\n").split("\t")
        with open(jobs_path, encoding="utf-8") as f:
            jobs = json.load(f)
        torch.save([_run(job) for job in jobs], results_path)
        print("done", flush=True)


if __name__ == "__main__":
    serve(with_package="--with-package" in sys.argv)
