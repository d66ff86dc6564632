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
    "refit_splits",
    "refit_student",
]

#: Calibration inputs of the refit (a seeded random subset of the training inputs).
DEFAULT_CALIBRATION_SIZE = 512
#: The fraction of the training inputs held out (from those the refit does not see) to judge refit → distil
#: against the refit alone.
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


def refit_splits(dataset: Any, args: Any) -> tuple[Any, Any, Any]:
    """``(calibration, train, selection)``: the refit road's subsets of ``dataset``.

    The calibration inputs are the first ``args.calibration_size`` of a permutation seeded by ``args.seed``: the same
    draw whether or not distillation follows, so a run whose guard keeps the refit returns the refit-alone twin.
    When it distils, the selection split is the last tenth of the inputs (at least one) among those the refit did not
    see, and it is held out of training too (None for the refit alone; ``train`` is then ``dataset``). With too few
    inputs for both, the calibration leaves its last-drawn inputs to the selection.

    >>> from types import SimpleNamespace
    >>> args = SimpleNamespace(calibration_size=4, seed=0, max_steps=10, num_train_epochs=1.0)
    >>> calibration, train, selection = refit_splits(list(range(20)), args)
    >>> len(calibration), len(train), len(selection), set(selection) & set(calibration)
    (4, 18, 2, set())
    >>> refit_splits(list(range(20)), SimpleNamespace(**{**vars(args), "max_steps": 0}))[0] == calibration
    True
    """
    n = len(dataset)
    drawn = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed))[: args.calibration_size].tolist()
    if refit_only(args):
        return _subset(dataset, sorted(drawn)), dataset, None
    size = max(1, int(n * SELECTION_FRACTION))
    drawn = drawn[: n - size]
    seen = set(drawn)
    selection = [i for i in range(n) if i not in seen][-size:]
    held = set(selection)
    train = [i for i in range(n) if i not in held]
    return _subset(dataset, sorted(drawn)), _subset(dataset, train), _subset(dataset, selection)


def batches_of(dataset: Any, batch_size: int, collator: Any) -> torch.utils.data.DataLoader:
    """``dataset`` in order, batched by ``collator`` (default: transformers' ``default_data_collator``)."""
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collator or default_data_collator)


def refit_student(
    student: nn.Module, teacher: nn.Module, calibration: Any, args: Any, collator: Any, inputs: int
) -> dict[str, Any]:
    """Refit ``student`` (swapped to ReLU) on ``calibration`` (drawn from ``inputs`` inputs: :func:`refit_splits`);
    returns what the report's ``training`` records of it.

    Under DDP or FSDP2 every rank refits on the same subset (same seed, same data), on its own device: no statistic
    is all-reduced; the ranks compute the same refit (tests/test_relufy_distributed.py checks they agree)."""
    device = args.device  # this rank's device: each rank refits on the same subset, so all ranks agree
    student.to(device), teacher.to(device)
    if args.process_index == 0:  # the plan line, as a training run prints one (run_plan.RunPlanCallback)
        then = "then distillation" if not refit_only(args) else "no training"
        print(
            f"relufy: road refit · least-squares refit on {len(calibration):,} of {inputs:,} inputs · {then} · "
            f"device {device}"
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
