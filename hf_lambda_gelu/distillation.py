"""Distillation terms for the road to ReLU: the frozen original model and the hardening-start snapshot.

Why (docs/method.md §8, §9): on real fine-tunes the weights cannot fully follow λ from 1 to λ*; a
teacher that keeps the student's internal features where the original GELU checkpoint had them
closes most of that gap. The original checkpoint is what the user loaded, so it is always at hand
and needs no trained task head.

Terms (each with its own weight): feature distillation to the original (``distill_alpha``, masked
hidden-state MSE over every layer; on in ``LambdaGELUTrainingArguments`` by default, α = 1), logit distillation to the original
(``distill_logits_alpha``, T²·KL) and self-distillation to a snapshot taken when hardening starts
(``self_distill_alpha``). How the teachers are held and when the snapshot is taken: docs/design.md.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer

from .activation import lambda_modules
from .config import DistillationConfig
from .errors import InvalidInputError, MissingTeacherError

__all__ = ["DistillationTrainer", "Distiller", "frozen_copy", "log_distill_loss", "logits_kl", "masked_hidden_mse"]

_NOT_MODEL_INPUTS = ("labels", "num_items_in_batch", "output_hidden_states", "return_dict")


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with every parameter frozen (a teacher).

    Args:
        model: the model to copy (taken before any training step when it is the original).

    >>> import torch
    >>> teacher = frozen_copy(torch.nn.Linear(2, 2))
    >>> teacher.training, teacher.weight.requires_grad
    (False, False)
    """
    teacher = copy.deepcopy(model)
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def _position_mean(values: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of per-position values (B, S) or (B,), counting only positions where the mask is 1."""
    if attention_mask is None or attention_mask.shape != values.shape:
        return values.mean()
    mask = attention_mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def masked_hidden_mse(
    student_hidden: Sequence[torch.Tensor],
    teacher_hidden: Sequence[torch.Tensor],
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over layers of the masked MSE between hidden states (float32).

    Each layer's term is the mean squared error over the feature dimension, averaged over the
    positions whose ``attention_mask`` is 1 (all positions when there is no mask, or when the mask
    does not match the hidden states' (batch, sequence) shape, e.g. a ViT).

    Args:
        student_hidden: one (batch, seq, dim) tensor per layer.
        teacher_hidden: the teacher's, same shapes.
        attention_mask: (batch, seq) with 1 for real tokens, or None.

    Raises:
        InvalidInputError: the two lists differ in length or a layer's shapes differ.

    >>> import torch
    >>> h = [torch.ones(1, 3, 4)]
    >>> float(masked_hidden_mse(h, [torch.zeros(1, 3, 4)], torch.tensor([[1, 1, 0]])))
    1.0
    """
    if len(student_hidden) != len(teacher_hidden) or not student_hidden:
        raise InvalidInputError(
            f"Feature distillation needs the same non-zero number of hidden states from student and teacher; got "
            f"{len(student_hidden)} and {len(teacher_hidden)}. Is the teacher the same architecture as the student?"
        )
    terms = []
    for layer, (s, t) in enumerate(zip(student_hidden, teacher_hidden)):
        if s.shape != t.shape:
            raise InvalidInputError(
                f"Hidden state {layer}: student shape {tuple(s.shape)} != teacher {tuple(t.shape)}."
            )
        per_position = (s.float() - t.float()).pow(2).mean(-1)
        terms.append(_position_mean(per_position, attention_mask))
    return torch.stack(terms).mean()


def logits_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 2.0,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """T²·KL(softmax(teacher/T) ‖ softmax(student/T)), averaged over (masked) positions, in float32.

    Args:
        student_logits: (batch, classes) or (batch, seq, vocab).
        teacher_logits: the teacher's, same shape.
        temperature: T > 0.
        attention_mask: (batch, seq) for sequence logits, or None.

    >>> import torch
    >>> z = torch.randn(2, 5)
    >>> float(logits_kl(z, z))
    0.0
    """
    if student_logits.shape != teacher_logits.shape:
        raise InvalidInputError(
            f"Logit distillation needs equal shapes; student {tuple(student_logits.shape)} != teacher "
            f"{tuple(teacher_logits.shape)}. Use distill_alpha (hidden states) when the heads differ."
        )
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = (t.exp() * (t - s)).sum(-1)
    return temperature * temperature * _position_mean(kl, attention_mask)


def log_distill_loss(logs: dict[str, float], values: list[torch.Tensor]) -> None:
    """Add ``distill_loss`` (the mean of ``values`` since the last training log) to a training log, and clear them.

    >>> logs, values = {"loss": 1.0}, [torch.tensor(0.5), torch.tensor(1.5)]
    >>> log_distill_loss(logs, values); logs["distill_loss"], values
    (1.0, [])
    """
    if "loss" in logs and values:
        logs["distill_loss"] = float(sum(values)) / len(values)
        values.clear()


def _output(outputs: Any, key: str) -> Any:
    if isinstance(outputs, Mapping):
        return outputs.get(key)
    return getattr(outputs, key, None)


class Distiller:
    """The distillation terms of a training run, with their frozen teachers.

    Args:
        teacher: frozen copy of the original model (:func:`frozen_copy`), or None when only
            self-distillation is used.
        config: the :class:`~hf_lambda_gelu.config.DistillationConfig` (weights of the hidden-state MSE and
            the logit KL to ``teacher``, of the KL to the snapshot (:meth:`take_snapshot`), and T).
        **settings: :class:`~hf_lambda_gelu.config.DistillationConfig` fields, over ``config``.

    >>> import torch
    >>> d = Distiller(frozen_copy(torch.nn.Linear(2, 2)), distill_alpha=1.0)
    >>> d.needs_hidden_states
    True
    """

    def __init__(self, teacher: nn.Module | None, config: DistillationConfig | None = None, **settings: Any) -> None:
        self.config = DistillationConfig(**settings) if config is None else dataclasses.replace(config, **settings)
        if self.config.needs_teacher and teacher is None:
            raise MissingTeacherError(self.config.distill_alpha, self.config.distill_logits_alpha)
        self.teacher = teacher
        #: Frozen copy of the student at hardening start (self-distillation), once taken.
        self.snapshot: nn.Module | None = None

    @property
    def needs_hidden_states(self) -> bool:
        """Whether the student must return hidden states (feature distillation is on)."""
        return self.config.distill_alpha > 0

    @property
    def wants_snapshot(self) -> bool:
        return self.config.self_distill_alpha > 0 and self.snapshot is None

    def take_snapshot(self, model: nn.Module, start_lambdas: Mapping[str, Sequence[float]]) -> None:
        """Freeze a copy of ``model`` with every λ set back to its value at hardening start, unpinned.

        Args:
            model: the bare (unwrapped) student.
            start_lambdas: layer name → λ values recorded when hardening began
                (:attr:`hf_lambda_gelu.HardeningCallback.start_lambdas`).
        """
        snapshot = frozen_copy(model)
        for name, module in lambda_modules(snapshot):
            if name in start_lambdas:
                module.set_lambda(torch.tensor(start_lambdas[name], dtype=torch.float64))
            module.unpin()
            module.relu_forward = False
        self.snapshot = snapshot

    @torch.no_grad()
    def _teacher_outputs(self, teacher: nn.Module, inputs: Mapping[str, Any], hidden: bool) -> Any:
        device = next((v.device for v in inputs.values() if isinstance(v, torch.Tensor)), None)
        param = next(teacher.parameters(), None)
        if device is not None and param is not None and param.device != device:
            teacher.to(device)
        kwargs = {k: v for k, v in inputs.items() if k not in _NOT_MODEL_INPUTS}
        return teacher(**kwargs, output_hidden_states=hidden) if hidden else teacher(**kwargs)

    def loss(self, student_outputs: Any, inputs: Mapping[str, Any]) -> torch.Tensor:
        """The weighted sum of the active terms for one batch (a scalar carrying the student's gradient).

        Args:
            student_outputs: the student's model output for ``inputs`` (with ``hidden_states`` if
                :attr:`needs_hidden_states`).
            inputs: the batch given to the student (labels are not passed to teachers).
        """
        mask = inputs.get("attention_mask")
        logits = _output(student_outputs, "logits")
        cfg, terms = self.config, []
        if self.teacher is not None and cfg.needs_teacher:
            teacher_out = self._teacher_outputs(self.teacher, inputs, hidden=cfg.distill_alpha > 0)
            if cfg.distill_alpha > 0:
                student_hidden = _output(student_outputs, "hidden_states")
                if student_hidden is None:
                    raise InvalidInputError(
                        "Feature distillation needs the student's hidden_states (output_hidden_states=True)."
                    )
                hidden = masked_hidden_mse(student_hidden[1:], _output(teacher_out, "hidden_states")[1:], mask)
                terms.append(cfg.distill_alpha * hidden)
            if cfg.distill_logits_alpha > 0:
                teacher_logits = _output(teacher_out, "logits")
                terms.append(
                    cfg.distill_logits_alpha * logits_kl(logits, teacher_logits, cfg.distill_temperature, mask)
                )
        if cfg.self_distill_alpha > 0 and self.snapshot is not None:
            snap_logits = _output(self._teacher_outputs(self.snapshot, inputs, hidden=False), "logits")
            terms.append(cfg.self_distill_alpha * logits_kl(logits, snap_logits, cfg.distill_temperature, mask))
        if not terms:
            return torch.zeros((), device=logits.device if logits is not None else None)
        return torch.stack(terms).sum()


class DistillationTrainer(Trainer):
    """A ``transformers.Trainer`` whose training loss adds a :class:`Distiller`'s terms.

    The terms are added to the training loss only (evaluation reports the task loss), scaled like the
    task loss under gradient accumulation, and logged as ``distill_loss`` (mean since the last log,
    this rank). "Like the task loss" follows the Trainer's contract: when it treats the task loss as
    normalized over the accumulated batch (``loss_is_scaled_for_ga``, or a model that accepts loss
    kwargs), each micro-batch's term is divided by the accumulation steps. A model that accepts loss
    kwargs but ignores ``num_items_in_batch`` (``BertForSequenceClassification`` in transformers 5.24:
    its logged loss doubles with 2 accumulation steps) then weighs the terms 1/steps against its loss.

    :class:`hf_lambda_gelu.LambdaGELUTrainer` builds on it; on its own it is the peer road "ReLU
    first, then fine-tune with distillation" (swap the model to ReLU, keep the original as teacher).

    Args:
        *args: what ``transformers.Trainer`` takes.
        distiller: the distillation terms and teachers (None = a plain Trainer).
        **kwargs: what ``transformers.Trainer`` takes.

    >>> teacher = frozen_copy(model)  # doctest: +SKIP
    >>> trainer = DistillationTrainer(model=relu_model, args=args, distiller=Distiller(teacher, distill_alpha=1.0))  # doctest: +SKIP
    """

    def __init__(self, *args: Any, distiller: Distiller | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.distiller = distiller
        self._distill_logged: list[torch.Tensor] = []

    def prepare_teachers(self) -> None:
        """Called before every training loss; subclasses take snapshots here (no-op by default)."""

    def extra_loss_active(self) -> bool:
        """Whether the training loss of this step gets extra terms (here: a distiller is set)."""
        return self.distiller is not None

    def extra_loss(self, outputs: Any, batch: Mapping[str, Any]) -> torch.Tensor:
        """The extra terms for one batch (here: the distiller's, logged as ``distill_loss``)."""
        extra = self.distiller.loss(outputs, batch)
        self._distill_logged.append(extra.detach())
        return extra

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        if not model.training or not self.extra_loss_active():
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        self.prepare_teachers()
        batch = dict(inputs)  # the parent may pop labels from what it gets
        if self.distiller is not None and self.distiller.needs_hidden_states:
            inputs = {**inputs, "output_hidden_states": True}
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        extra = self.extra_loss(outputs, batch)
        scaled = getattr(self, "loss_is_scaled_for_ga", None)
        if scaled is None:
            scaled = (self.model_accepts_loss_kwargs and num_items_in_batch is not None) or self.compute_loss_func
        if scaled:  # the task loss is already normalized over the accumulated batch: match it
            extra = extra / self.current_gradient_accumulation_steps
        loss = loss + extra
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        log_distill_loss(logs, self._distill_logged)
        super().log(logs, start_time)
