"""``LambdaGELUTrainer``: Trainer with λ parameter groups, the λ update, hardening and ReLU-ization."""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
from typing import Any

from transformers import TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_callback import TrainerState
from transformers.trainer_utils import HubStrategy

from .activation import lambda_modules
from .conversion import convert_to_lambda_gelu
from .distillation import DistillationTrainer, Distiller, frozen_copy
from .errors import InvalidSettingError
from .guards import GuardedTrainingMixin
from .hardening import PRE_HARDENING_WEIGHTS_NAME, HardeningCallback
from .hardness_pressure import hardness_pressure_term
from .lr_floor import with_lr_floor
from .optim import create_lambda_gelu_optimizer, install_lambda_update
from .reluize import ReluizeReport, gelu_to_relu, hardness_profile, reluize
from .run_plan import RunPlanCallback
from .settings_effect import lambda_learned
from .swap_measure import measure_swap
from .training_args import LambdaGELUTrainingArguments
from .window_logs import HardeningWindowLogs, road_record

__all__ = ["LambdaGELUTrainer"]

logger = logging.getLogger(__name__)

RELEASE_DIRNAME = "release"
#: Why the report has no naive-swap baseline when hardening started at the first step.
NAIVE_SWAP_AT_STEP_0 = (
    "hardening started at the first step, so the model at hardening start is the untouched starting checkpoint "
    "(a new task's head untrained) and swapping it measures nothing about this run"
)


class LambdaGELUTrainer(GuardedTrainingMixin, DistillationTrainer):
    """A ``transformers.Trainer`` that trains λ-GELU models and ends with a ReLU model.

    - A model that still has GELU activations is converted first (``lambda_init``, ``lambda_temperature``).
    - The optimizer gets λ in its own group (``lambda_learning_rate``, no weight decay) and the
      optimizer-aware λ update: :func:`hf_lambda_gelu.create_lambda_gelu_optimizer`, the function any
      other Trainer uses too (an optimizer passed in ``optimizers`` gets the λ update installed).
    - :class:`HardeningCallback` pins λ from ``hardening_start`` and drives it to λ* at ``hardening_end``;
      the steps after it train with exact ReLU forwards (consolidation). ``hardening_start=1.0``: no
      hardening, no swap; λ is learned to the end and the λ-GELU model is kept.
    - The default road (chosen on tuning splits, ``benchmarks/README.md``): hardened from the first step
      to λ* at 10 % of the run (``hardening_start=0``, ``hardening_end=0.1``), then ReLU, with feature
      distillation to a frozen copy of the model as given (the original checkpoint, taken before
      conversion and training; ``distill_alpha=1``; ``0`` is the cheaper setting without it).
      ``distill_logits_alpha`` adds a KL to the original's logits, ``self_distill_alpha`` one to a snapshot
      taken at hardening start (:mod:`hf_lambda_gelu.distillation`; training loss only). For a late road
      (λ learned first, ``hardening_start`` > 0): ``hardening_lr_floor`` floors the learning-rate multiplier
      in the hardening window (:func:`hf_lambda_gelu.lr_floor.with_lr_floor`), ``hardness_pressure`` adds
      β·Σ_l c/λ_l while λ learns (:mod:`hf_lambda_gelu.hardness_pressure`).
    - Every training log gets λ: ``lambda/<layer>`` where layers differ or λ is learned, else one ``lambda``;
      a few extra logs trace the hardening window (:mod:`hf_lambda_gelu.window_logs`). The final profile
      and the road go to ``output_dir`` as ``hardness_profile.json`` and ``hardness_profile.png``.
    - With ``reluize_at_end`` the model is swapped to ``nn.ReLU`` after training; the disruption
      (metric before/after, |Δlogits|, agreement, and the naive-swap baseline) is written to
      ``reluization_report.json``, logged, and added to the metrics ``train()`` returns.
    - ``push_to_hub()`` publishes only the ReLU release (model, config, processor, card, profile
      plot, report) from ``output_dir/release``, never checkpoints or other stale files
      (``push_to_hub=True`` runs with ``hub_strategy="end"``: no upload at checkpoint saves). The Hub
      token is kept out of every saved ``training_args.bin``.
    - Training stops at the first NaN/inf loss (:class:`~hf_lambda_gelu.errors.NonFiniteLossError`, naming
      the step and the batch rows that hold NaN/inf), before the optimizer applies it. bf16/fp16 runs end
      with the mixed-precision wrapper removed from ``model.forward``, so the model and its saved release
      compute alike. Resuming from a finished run's last checkpoint takes no further step.
    - A checkpoint that finds its disk full raises :class:`~hf_lambda_gelu.errors.CheckpointDiskFullError` (naming
      ``checkpoint-N`` and the free space) and leaves no partial ``checkpoint-N`` for a resume to pick up.

    Built only on public ``Trainer`` hooks (``create_optimizer``, ``create_scheduler``, ``compute_loss``,
    ``log``, ``save_model``, ``train``, ``push_to_hub``, callbacks), so it composes with other subclasses; the one
    private method it wraps (calls, never copies) is ``_save_checkpoint``, for the full-disk error
    (``tests/test_disk_full.py`` fails if upstream renames it).

    Args:
        model: a transformers model (GELU or λ-GELU), PEFT-wrapped or not.
        args: :class:`LambdaGELUTrainingArguments` (default: one with ``output_dir="trainer_output"``).
            Plain ``TrainingArguments`` are upgraded (every value kept, the Hub token included; λ-GELU
            settings at their defaults).
        **kwargs: everything ``transformers.Trainer`` takes.

    >>> trainer = LambdaGELUTrainer(model=model, args=args, train_dataset=train, eval_dataset=val)  # doctest: +SKIP
    >>> trainer.train().metrics["reluize_prediction_agreement"]  # doctest: +SKIP
    """

    def __init__(self, model=None, args: LambdaGELUTrainingArguments | None = None, *pos: Any, **kwargs: Any):
        if args is None:
            args = LambdaGELUTrainingArguments(output_dir="trainer_output")
        if not isinstance(args, LambdaGELUTrainingArguments):
            args = _upgrade_training_args(args)
        if args.push_to_hub and args.hub_strategy != HubStrategy.END:
            logger.info(
                "LambdaGELUTrainer does not upload checkpoints (hub_strategy='end'); push_to_hub() publishes the ReLU release."
            )
            args.hub_strategy = HubStrategy.END
        distillation = args.distillation_config()
        teacher = None
        if model is not None and distillation.needs_teacher:
            teacher = frozen_copy(model)  # the original checkpoint, before conversion and training
        if model is not None and not lambda_modules(model):
            convert_to_lambda_gelu(model, args.lambda_config())
            logger.warning(
                "LambdaGELUTrainer converted the model's GELU activations to λ-GELU (init λ=%g, τ=%g).",
                args.lambda_init,
                args.lambda_temperature,
            )
        distiller = Distiller(teacher, distillation) if distillation.enabled else None
        super().__init__(model, args, *pos, distiller=distiller, **kwargs)
        keep = args.reluize_at_end and args.naive_swap_baseline
        self.add_callback(HardeningCallback(args.hardening_config(), keep_pre_hardening_state=keep))
        self.add_callback(HardeningWindowLogs(lambda: self.hardening))
        self.add_callback(
            RunPlanCallback(type(self).__name__, _road_in_words(args), lambda: (self.train_dataset, self.eval_dataset))
        )
        self.lambda_update = None
        self.final_profile: dict[str, float] | None = None
        self.reluization_report: ReluizeReport | None = None
        #: Why the naive-swap baseline could not be measured (None when it was, or was not asked for).
        self.naive_swap_unavailable: str | None = None
        #: Checkpoint this run resumed from, whose pre-hardening weights are read on first need.
        self._resume_folder: str | None = None
        #: That checkpoint's global step (a resume from a finished run's last checkpoint takes no step).
        self._resume_step: int | None = None

    @property
    def hardening(self) -> HardeningCallback:
        """The run's :class:`HardeningCallback` (after a resume with ``restore_callback_states_from_checkpoint``,
        the instance transformers put in its place)."""
        return next(cb for cb in self.callback_handler.callbacks if isinstance(cb, HardeningCallback))

    # -- optimizer ---------------------------------------------------------------------------
    def create_optimizer(self, model=None):
        """:func:`create_lambda_gelu_optimizer` with the optimizer and settings of ``args``; an optimizer passed
        in ``optimizers`` gets the λ update installed (once)."""
        opt_model = self.model if model is None else model
        family = self.args.lambda_optimizer_family
        if self.optimizer is None:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            optimizer_kwargs.pop("lr", None)
            self.optimizer = create_lambda_gelu_optimizer(
                opt_model,
                optimizer_cls,
                lr=self.args.learning_rate,
                lambda_learning_rate=self.args.lambda_learning_rate,
                weight_decay=self.args.weight_decay,
                lambda_optimizer_family=family,
                decay_parameter_names=self.get_decay_parameter_names(opt_model),
                **optimizer_kwargs,
            )
        self.lambda_update = install_lambda_update(self.optimizer, opt_model, lambda_optimizer_family=family)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        created = self.lr_scheduler is None
        scheduler = super().create_scheduler(num_training_steps, optimizer)
        if created and self.args.hardening_lr_floor is not None and self.hardening.enabled:
            start = self.hardening.start_step_for(num_training_steps)
            end = self.hardening.end_step_for(num_training_steps)
            self.lr_scheduler = with_lr_floor(scheduler, self.args.hardening_lr_floor, start, end)
        return self.lr_scheduler

    # -- distillation ------------------------------------------------------------------------
    def prepare_teachers(self) -> None:
        if self.distiller is not None and self.distiller.wants_snapshot and self.hardening.started:
            self.distiller.take_snapshot(self.model, self.hardening.start_lambdas)

    def _pressure_active(self) -> bool:
        return self.args.hardness_pressure > 0 and not self.hardening.started

    def extra_loss_active(self) -> bool:
        return super().extra_loss_active() or self._pressure_active()

    def extra_loss(self, outputs, batch):
        """Distillation terms (if any) plus, while λ learns, ``hardness_pressure``·Σ_l c/λ_l."""
        terms = [super().extra_loss(outputs, batch)] if self.distiller is not None else []
        if self._pressure_active():
            terms.append(self.args.hardness_pressure * hardness_pressure_term(self.model))
        return sum(terms)

    # -- logging -----------------------------------------------------------------------------
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self.model is not None:
            logs.update(self._lambda_logs())
        super().log(logs, start_time)

    def _lambda_logs(self) -> dict[str, float]:
        """``lambda/<layer>`` where λ differs between layers or is learned, else one ``lambda`` (the common value)."""
        profile = hardness_profile(self.model)
        if len(set(profile.values())) == 1 and not self.lambda_learned:
            return {"lambda": next(iter(profile.values()))}
        return {f"lambda/{name}": lam for name, lam in profile.items()}

    @property
    def lambda_learned(self) -> bool:
        """Whether λ trains in this run (``hardening_start`` > 0 and ``lambda_learning_rate`` > 0)."""
        return bool(lambda_learned(vars(self.args)))

    # -- checkpoints and resume --------------------------------------------------------------
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)  # GuardedTrainingMixin: training_args.bin holds no token
        # A checkpoint (saved before its trainer_state.json, so any checkpoint a resume can use) written
        # after hardening started carries the weights of its start: the naive-swap baseline survives.
        if _internal_call and self._pre_hardening_state() is not None and self.args.should_save:
            self.hardening.save_pre_hardening_state(output_dir or self.args.output_dir)

    def _pre_hardening_state(self) -> dict | None:
        """The weights at hardening start: taken in this run, or read (once) from the checkpoint it resumed from.

        The hardening schedule itself resumes in :meth:`HardeningCallback.on_train_begin`.
        """
        hardening, folder = self.hardening, self._resume_folder
        self._resume_folder = None
        if (
            folder is None
            or hardening.pre_hardening_state is not None
            or not (hardening.started and hardening.keep_pre_hardening_state)
            or hardening.load_pre_hardening_state(folder)
        ):
            return hardening.pre_hardening_state
        self.naive_swap_unavailable = (
            f"the run resumed from {folder} after hardening had started, and that checkpoint has no "
            f"{PRE_HARDENING_WEIGHTS_NAME} (the weights at hardening start, which the swap baseline needs)"
        )
        logger.warning("No naive-swap baseline: %s.", self.naive_swap_unavailable)
        return None

    # -- training ----------------------------------------------------------------------------
    def set_initial_training_values(self, args, dataloader):
        """Upstream's values, with no epoch left when resuming from a checkpoint at (or past) ``max_steps``.

        Upstream re-enters the last epoch of a run whose ``max_steps`` is not a whole number of epochs and takes
        one more optimizer step; the last checkpoint of a finished run must resume to exactly its weights.
        """
        num_epochs, steps_per_epoch, *rest = super().set_initial_training_values(args, dataloader)
        max_steps = rest[-1]
        if self._resume_step is not None and self._resume_step >= max_steps:
            num_epochs = min(num_epochs, self._resume_step // steps_per_epoch)  # = the epochs upstream counts as done
        return (num_epochs, steps_per_epoch, *rest)

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any):
        if resume_from_checkpoint is True:
            from transformers.trainer_utils import get_last_checkpoint

            self._resume_folder = get_last_checkpoint(self.args.output_dir)
        else:
            self._resume_folder = resume_from_checkpoint or None
        self._resume_step = _checkpoint_step(self._resume_folder)
        output = super().train(resume_from_checkpoint, *args, **kwargs)
        self.drop_autocast_wrapper()
        profile = hardness_profile(self.model)
        if not profile:
            return output
        self.final_profile = profile
        if self.is_world_process_zero():
            self._save_profile(profile)
        if self.args.reluize_at_end and self.hardening.enabled:
            output.metrics.update(self.reluize_and_report())
        elif self.args.reluize_at_end:
            logger.info("hardening_start=1.0: no hardening and no ReLU swap; the model stays λ-GELU.")
        return output

    def _save_profile(self, profile: dict[str, float]) -> None:
        from .release import PROFILE_JSON_FILENAME, PROFILE_PLOT_FILENAME, save_profile_json, save_profile_plot

        os.makedirs(self.args.output_dir, exist_ok=True)
        target, learned = self.args.target_lambda, self.learned_profile()
        out = self.args.output_dir
        save_profile_json(profile, os.path.join(out, PROFILE_JSON_FILENAME), target_lambda=target, learned=learned)
        road = self._road()
        save_profile_plot(
            profile,
            os.path.join(out, PROFILE_PLOT_FILENAME),
            target_lambda=target if self.hardening.enabled else None,  # a profiling run: λ's own range, no λ* line
            learned=learned,
            log_history=road["log_history"],
            hardening_steps=road["hardening_steps"],
        )

    def learned_profile(self) -> dict[str, float] | None:
        """Layer → λ learned before hardening started (smallest λ of a per-channel layer); None unless λ was
        learned (:attr:`lambda_learned`) and hardening started after the first step."""
        if not (self.lambda_learned and self.hardening.started and self.hardening.start_step > 0):
            return None
        return {name: min(values) for name, values in self.hardening.start_lambdas.items()} or None

    # -- publishing --------------------------------------------------------------------------
    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **kwargs: Any,
    ) -> str | None:
        """Publish the ReLU-ized model as a clean release (ReLU-izing first if needed).

        The release folder ``output_dir/release`` holds exactly what goes up: model (config says
        relu), tokenizer/processor, model card, hardness profile plot/JSON and the disruption report.
        A failed upload raises :class:`hf_lambda_gelu.errors.PushError` and keeps that folder.

        Args:
            commit_message: Hub commit message.
            blocking, revision: accepted for Trainer compatibility (uploads are blocking, on main).
            token: Hub token (default ``args.hub_token``, then the stored login); never logged.
            private: create the repo private (default ``args.hub_private_repo``).
            **kwargs: card fields for :func:`hf_lambda_gelu.release.card.build_model_card`
                (``dataset_names``, ``license``, ``model_name``, ``extra_text``, ...), ``base_model``, and
                ``allow_gelu_remnants`` (see :func:`hf_lambda_gelu.release.folder.save_release`).

        Returns:
            The Hub commit URL on the main process, None elsewhere.
        """
        if lambda_modules(self.model) and not self.hardening.enabled:
            raise InvalidSettingError(
                "hardening_start",
                1.0,
                "push_to_hub() publishes a ReLU release, but no hardening kept the λ-GELU model unhardened (swapping "
                "it to ReLU now would change its outputs). Save it with trainer.save_model() instead, or train with "
                "hardening_start < 1.",
            )
        if lambda_modules(self.model):
            self.reluize_and_report()  # every rank: evaluation gathers across ranks
        if not self.is_world_process_zero():
            return None
        from .release import save_release, upload_release  # publishing: one call down

        repo_id = self.args.hub_model_id or os.path.basename(os.path.normpath(self.args.output_dir))
        allow_gelu_remnants = kwargs.pop("allow_gelu_remnants", False)
        base_model = kwargs.pop("base_model", None) or getattr(
            getattr(self.model, "config", None), "_name_or_path", None
        )
        self.drop_autocast_wrapper()  # reluize_and_report's evaluation may have wrapped a model never trained here
        model = self.model
        if hasattr(model, "merge_and_unload"):  # PEFT: publish the merged ReLU model
            model = copy.deepcopy(model).merge_and_unload()
        settings = self.args.settings()
        release = save_release(
            model,
            os.path.join(self.args.output_dir, RELEASE_DIRNAME),
            processing_class=self.processing_class,
            base_model=base_model or None,
            report=self.reluization_report,
            profile=self.final_profile,
            card_kwargs={"repo_id": repo_id, "settings": settings, **kwargs},
            allow_gelu_remnants=allow_gelu_remnants,
        )
        return upload_release(
            release,
            repo_id,
            private=self.args.hub_private_repo if private is None else private,
            token=token if token is not None else self.args.hub_token,
            commit_message=commit_message,
        )

    def _predict_eval(self, model):
        """``predict`` on the eval set with ``model`` in place of ``self.model`` (the same data, metrics, gathering)."""
        if model is self.model:
            return self.predict(self.eval_dataset, metric_key_prefix="eval")
        saved = self.model, self.model_wrapped
        self.model = self.model_wrapped = model
        try:
            return self.predict(self.eval_dataset, metric_key_prefix="eval")
        finally:
            self.model, self.model_wrapped = saved

    def _naive_swap_meaningful(self) -> bool:
        """False (and the reason recorded) when hardening started at step 0: the model at hardening start is
        then the untouched starting checkpoint, whose swap is no baseline for this run."""
        if self.hardening.started and self.hardening.start_step == 0:
            self.hardening.pre_hardening_state = None
            self.naive_swap_unavailable = NAIVE_SWAP_AT_STEP_0
            return False
        return True

    def _road(self) -> dict[str, Any]:
        """The run's road for the report (and the release's plot): hardening window in steps and the λ/loss logs."""
        window = None
        if self.hardening.started:
            window = [self.hardening.start_step, self.hardening.end_step_for(self.state.max_steps)]
        return road_record(self.state.log_history, hardening_steps=window, max_steps=self.state.max_steps)

    def reluize_and_report(self) -> dict[str, float]:
        """Swap λ-GELU → ReLU on ``self.model``, measure the disruption, write and log the report.

        Every rank must call it (evaluation gathers across ranks); rank 0 writes the file. The
        :class:`~hf_lambda_gelu.reluize.ReluizeReport` is kept as ``self.reluization_report``.
        Returns its flat metrics (``reluize_*``, ``naive_swap_*``), also added to ``train()``'s metrics.
        """
        predict = self._predict_eval if self.eval_dataset is not None else None
        naive_model = None
        pre_hardening_state = self._pre_hardening_state() if self._naive_swap_meaningful() else None
        if predict is not None and pre_hardening_state is not None:
            naive_model = copy.deepcopy(self.model)
            naive_model.load_state_dict(pre_hardening_state)
            for _, module in lambda_modules(naive_model):
                module.unpin()
                module.relu_forward = False
        # hardened to this run's own (possibly per-layer) targets: the bound is checked only if hardening never ran
        tolerance = None if self.hardening.started else self.args.relu_tolerance
        report = measure_swap(self.model, functools.partial(reluize, tolerance=tolerance), predict)
        report.tolerance = self.args.relu_tolerance  # the run's ε (the card's), also where the bound was not checked
        report.target_lambda = self.args.target_lambda
        report.learned_lambdas = self.learned_profile()
        report.settings = self.args.settings()
        report.road = self._road()
        if naive_model is not None:
            report.naive_swap = measure_swap(naive_model, gelu_to_relu, predict)  # the naive baseline, on purpose
        elif self.naive_swap_unavailable:
            report.naive_swap_unavailable = self.naive_swap_unavailable
        self.hardening.pre_hardening_state = None
        self.reluization_report = report
        from .release import REPORT_FILENAME

        if self.is_world_process_zero():
            os.makedirs(self.args.output_dir, exist_ok=True)
            with open(os.path.join(self.args.output_dir, REPORT_FILENAME), "w") as f:
                json.dump(report.to_dict(), f, indent=2)
        flat = report.metrics()
        self.log(flat)
        return flat


def _road_in_words(args: LambdaGELUTrainingArguments) -> str:
    """The run's road for its plan line, e.g. ``λ-GELU → ReLU (λ* ≈ 170 over 0-10 % of the steps)``."""
    if args.hardening_start >= 1.0:
        return "λ-GELU, λ learned, no hardening (hardening_start=1.0)"
    window = f"{100 * args.hardening_start:g}-{100 * args.hardening_end:g} %"
    return f"λ-GELU → ReLU (λ* ≈ {args.target_lambda:.0f} over {window} of the steps)"


def _checkpoint_step(folder: str | None) -> int | None:
    """The global step recorded in ``folder``'s trainer_state.json (None without one)."""
    path = os.path.join(folder, TRAINER_STATE_NAME) if folder else None
    if path is None or not os.path.isfile(path):
        return None
    return TrainerState.load_from_json(path).global_step


def _upgrade_training_args(args: Any) -> LambdaGELUTrainingArguments:
    """Plain ``TrainingArguments`` → ``LambdaGELUTrainingArguments`` with the λ-GELU defaults.

    ``to_dict()`` masks every ``*_token`` field (``<HUB_TOKEN>``); the real values are put back.
    """
    if not isinstance(args, TrainingArguments):
        raise TypeError(
            f"LambdaGELUTrainer needs LambdaGELUTrainingArguments (or TrainingArguments), got {type(args).__name__}."
        )
    values = args.to_dict()
    values.update({key: getattr(args, key) for key in values if key.endswith("_token")})
    logger.warning("LambdaGELUTrainer got plain TrainingArguments: the λ-GELU settings take their defaults.")
    return LambdaGELUTrainingArguments(**values)
