"""The fresh-process side of the release gate (:mod:`hf_lambda_gelu.release_gate`).

Run as ``python reload_worker.py JOBS.json RESULTS.pt``: it imports only torch and transformers, reloads each
saved folder with its transformers class, runs the saved inputs through it and writes what came back
(output tensors, activation module types, λ values, load warnings) to ``RESULTS.pt``. Jobs marked
``with_package`` run last, after ``import hf_lambda_gelu`` (the λ-GELU round trip); the others run
first, while the package is provably not imported (stock transformers, as any user loads a release).

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
        model, info = model_cls.from_pretrained(job["folder"], output_loading_info=True)
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


def main(argv: list[str]) -> int:
    jobs = json.loads(open(argv[0], encoding="utf-8").read())
    results: list[dict[str, Any] | None] = [None] * len(jobs)
    for with_package in (False, True):
        if with_package and any(job["with_package"] for job in jobs):
            import hf_lambda_gelu  # noqa: F401 - registers λ-GELU for the round-trip jobs
        for i, job in enumerate(jobs):
            if job["with_package"] == with_package:
                if not with_package and "hf_lambda_gelu" in sys.modules:
                    raise RuntimeError("hf_lambda_gelu was imported before the stock-transformers reloads")
                results[i] = _run(job)
    torch.save(results, argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[-2:]))
