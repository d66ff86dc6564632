"""relufy's road ``"refit"``: the calibration subset, the least-squares refit of the student, and the guard that
keeps the refit when distilling after it does not bring the twin closer to the original.

The guard judges on a held-out tenth of the training inputs (the selection split: neither calibrated nor
trained on), never on the evaluation inputs the fidelity report is measured on. It compares the mean KL to the
original's outputs (classifiers, causal LMs) or the mean cosine of the pooled embeddings (embedders).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from transformers import default_data_collator

from .fidelity import Pooling, measure_fidelity
from .refit import refit_down_projections

__all__ = [
    "DEFAULT_CALIBRATION_SIZE",
    "SELECTION_FRACTION",
    "batches_of",
    "keep_best",
    "refit_only",
    "refit_student",
    "selection_split",
]

#: Calibration inputs of the refit (a seeded random subset of the training inputs).
DEFAULT_CALIBRATION_SIZE = 512
#: The fraction of the training inputs held out to judge refit → distil against the refit alone.
SELECTION_FRACTION = 0.1


def refit_only(args: Any) -> bool:
    """Whether a refit-road run takes no gradient step (``max_steps`` 0, or ``num_train_epochs`` 0 without max_steps).

    >>> from types import SimpleNamespace
    >>> refit_only(SimpleNamespace(max_steps=0, num_train_epochs=3.0)), refit_only(SimpleNamespace(max_steps=-1, num_train_epochs=1.0))
    (True, False)
    """
    return args.max_steps == 0 or (args.max_steps < 0 and args.num_train_epochs == 0)


def _subset(dataset: Any, indices: list[int]) -> Any:
    select = getattr(dataset, "select", None)
    return select(indices) if select is not None else [dataset[i] for i in indices]


def selection_split(dataset: Any) -> tuple[Any, Any]:
    """``(train, selection)``: the last tenth of ``dataset`` (at least one input) held out as the selection split.

    >>> selection_split(list(range(20)))
    ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17], [18, 19])
    """
    n = len(dataset)
    cut = n - max(1, int(n * SELECTION_FRACTION))
    return _subset(dataset, list(range(cut))), _subset(dataset, list(range(cut, n)))


def batches_of(dataset: Any, batch_size: int, collator: Any) -> torch.utils.data.DataLoader:
    """``dataset`` in order, batched by ``collator`` (default: transformers' ``default_data_collator``)."""
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collator or default_data_collator)


def refit_student(student: nn.Module, teacher: nn.Module, dataset: Any, args: Any, collator: Any) -> dict[str, Any]:
    """Refit ``student`` (swapped to ReLU) on ``args.calibration_size`` inputs drawn from ``dataset`` with
    ``args.seed``; returns what the report's ``training`` records of it.

    Under DDP or FSDP2 every rank refits on the same subset (same seed, same data), on its own device: no statistic
    is all-reduced; the ranks compute the same refit (tests/test_relufy_distributed.py checks they agree)."""
    n = min(args.calibration_size, len(dataset))
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(args.seed))[:n]
    calibration = _subset(dataset, sorted(order.tolist()))
    device = args.device  # this rank's device: each rank refits on the same subset, so all ranks agree
    student.to(device), teacher.to(device)
    if args.process_index == 0:  # the plan line, as a training run prints one (run_plan.RunPlanCallback)
        then = "then distillation" if not refit_only(args) else "no training"
        print(
            f"relufy: road refit · least-squares refit on {n:,} of {len(dataset):,} inputs · {then} · device {device}"
        )
    report = refit_down_projections(
        student,
        teacher,
        batches_of(calibration, args.per_device_train_batch_size, collator),
        ridge=args.refit_ridge,
        progress=not args.disable_tqdm,
    )
    return {
        "calibration_examples": report.calibration_examples,
        "refit_seconds": report.seconds,
        "refit_ridge": report.ridge,
        "refit": report.to_dict(),
    }


def _score(teacher: nn.Module, twin: nn.Module, loader: Any, kind: str, pooling: Pooling) -> float:
    """Higher is closer: the mean cosine (embedders) or minus the mean KL (classifiers, causal LMs)."""
    report = measure_fidelity(teacher, twin, loader, kind=kind, pooling=pooling, neighbours=0)
    return report.mean_cosine if kind == "embedder" else -report.mean_kl


def keep_best(
    teacher: nn.Module,
    twin: nn.Module,
    refit_state: dict[str, torch.Tensor],
    selection: Any,
    args: Any,
    kind: str,
    pooling: Pooling,
    collator: Any,
) -> dict[str, Any]:
    """Keep the distilled ``twin`` only if it is closer to ``teacher`` on ``selection`` than the refit was;
    otherwise load the refit's weights back. Returns the report's record of the choice."""
    loader = batches_of(selection, args.per_device_eval_batch_size, collator)
    twin.eval()
    distilled = _score(teacher, twin, loader, kind, pooling)
    distilled_state = copy.deepcopy(twin.state_dict())
    twin.load_state_dict(refit_state)
    refit = _score(teacher, twin, loader, kind, pooling)
    kept = "refit → distil" if distilled > refit else "refit"
    if kept != "refit":
        twin.load_state_dict(distilled_state)
    measure = "mean cosine" if kind == "embedder" else "minus mean KL"
    return {
        "kept": kept,
        "selection_examples": len(selection),
        "selection": {"measure": measure, "refit": refit, "refit → distil": distilled},
    }
