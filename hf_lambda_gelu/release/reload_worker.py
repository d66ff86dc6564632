"""The fresh-process side of the release gate (:mod:`hf_lambda_gelu.release.gate`).

Run as a script (``python reload_worker.py [--with-package]``), it serves requests on stdin: each
names a jobs file; it reloads each saved folder with its transformers class, runs the saved inputs
through it and writes what came back (output tensors, activation module types, λ values, load
warnings) to the results file. The stock worker imports only torch and transformers (checked), as
any user loading a release; the ``--with-package`` worker imports ``hf_lambda_gelu`` first (λ-GELU
round trips).

This file must not import the package: it is the outsider's view.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import torch

ACTIVATION_TYPES = ("ReLU", "LambdaGELU")


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
    """Name → class name of every activation-like module (ReLU, λ-GELU, GELU flavors, other ``*Act*``)."""
    out = {}
    for name, module in model.named_modules():
        cls = type(module).__name__
        low = cls.lower()
        if cls in ACTIVATION_TYPES or "gelu" in low or "activation" in low or low in ("silu", "tanh", "relu"):
            out[name] = cls
    return out


def lambda_values(model: torch.nn.Module) -> dict[str, list[float]]:
    """Name → λ values of every λ-GELU module (empty without the package)."""
    return {
        name: module.lambda_.detach().double().flatten().tolist()
        for name, module in model.named_modules()
        if type(module).__name__ == "LambdaGELU"
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
