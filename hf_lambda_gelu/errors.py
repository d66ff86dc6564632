"""Exceptions and warnings of the package, each naming the offending value and the fix.

Every exception derives from :class:`LambdaGELUError` (``except LambdaGELUError`` catches them all) and from the
builtin its callers expect (``ValueError`` for bad settings and inputs, ``RuntimeError`` for a failed upload or
export, ``ImportError`` for a missing extra, ``OSError`` for a full disk); every warning from :class:`LambdaGELUWarning`.
"""

from __future__ import annotations

import errno
import shlex
from pathlib import Path
from typing import Any

__all__ = [
    "CheckpointDiskFullError",
    "InvalidInputError",
    "LambdaGELUError",
    "LambdaGELUWarning",
    "DataFileError",
    "ExportAuditError",
    "GELURemnantsError",
    "InertSettingWarning",
    "InvalidSettingError",
    "LRFloorError",
    "LambdaOptimizerError",
    "MissingExtraError",
    "MissingTeacherError",
    "ModelFolderError",
    "ModelSourceError",
    "NoGELUFoundError",
    "NonFiniteLossError",
    "NotAReleaseError",
    "NotLambdaGELUModelError",
    "NotReluModelError",
    "OutputDirNotEmptyError",
    "OutputDirOverlapError",
    "PushError",
    "ReleaseDirBusyError",
    "ReleaseDirNotEmptyError",
    "ReleaseDiskFullError",
    "ReleaseReloadError",
    "ReloadCheckedFileError",
    "ReluModelRequiredError",
    "SingularCalibrationError",
    "UncontrolledGELUError",
    "UnhardenedSwapError",
    "UnhardenedSwapWarning",
    "UnsupportedPoolingError",
    "UnsupportedRefitError",
]


class LambdaGELUError(Exception):
    """Base of every exception hf_lambda_gelu raises."""


class LambdaGELUWarning(UserWarning):
    """Base of every warning hf_lambda_gelu issues."""


class InvalidSettingError(LambdaGELUError, ValueError):
    """A setting (config field, training argument, function argument) is out of range; names it, the value, the fix."""

    def __init__(self, name: str, value: Any, fix: str) -> None:
        self.name, self.value = name, value
        super().__init__(f"{name}={value!r} is invalid: {fix}")


class InvalidInputError(LambdaGELUError, ValueError):
    """An input does not fit (tensor shapes, an empty or malformed profile, no batch): says what came and what to pass."""


class NoGELUFoundError(LambdaGELUError, ValueError):
    """The model has no GELU activation that λ-GELU can replace."""

    def __init__(self, found: list[str]) -> None:
        self.found = found
        listed = ", ".join(found) if found else "none"
        super().__init__(
            "No GELU activation to convert to λ-GELU. Activation modules found: "
            f"[{listed}]. Convertible: GELUActivation, nn.GELU, NewGELUActivation, GELUTanh/"
            "PytorchGELUTanh, FastGELUActivation, AccurateGELUActivation. Check the model (or filter_fn)."
        )


class NotLambdaGELUModelError(LambdaGELUError, ValueError):
    """The model has no λ-GELU activation (e.g. reluize() on a plain model)."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what} has no LambdaGELU module. Convert it first with hf_lambda_gelu.convert_to_lambda_gelu(model) "
            "or load a λ-GELU checkpoint."
        )


class UncontrolledGELUError(NoGELUFoundError):
    """The model's GELUs are all hard-coded: no config field builds them, so no checkpoint could keep λ or ReLU."""

    def __init__(self, what: str, modules: dict[str, str]) -> None:
        self.modules = modules
        listed = ", ".join(f"{name} ({cls})" for name, cls in modules.items())
        ValueError.__init__(
            self,
            f"{what}'s GELU activations [{listed}] are hard-coded: no config field builds them, so a λ-GELU or ReLU "
            "checkpoint of this model would reload as GELU in stock transformers. Nothing was converted. Fields "
            "the package knows: hf_lambda_gelu.config_fields.ACTIVATION_FIELDS.",
        )


class GELURemnantsError(LambdaGELUError, ValueError):
    """A release would keep GELUs no config field controls and still be called "ReLU"."""

    def __init__(self, what: str, remnants: dict[str, str]) -> None:
        self.remnants = remnants
        listed = "; ".join(f"{name or '<model>'}: {kind}" for name, kind in remnants.items())
        super().__init__(
            f"{what} keeps GELUs that no config field controls ({listed}); they stay GELU in the release, so it is "
            "not a plain ReLU model. Pass allow_gelu_remnants=True (CLI: --allow-gelu-remnants; recipes: "
            "--allow_gelu_remnants true) to release it anyway: the report and the model card then list these GELUs."
        )


class ReleaseReloadError(LambdaGELUError, ValueError):
    """A saved checkpoint does not reload (fresh process) as the model in memory."""

    def __init__(self, folder: str, details: str, *, with_package: bool = False) -> None:
        self.folder = folder
        how = "with hf_lambda_gelu imported" if with_package else "with stock transformers"
        super().__init__(
            f"The checkpoint in {folder!r} does not reload {how} as the model that was saved: {details}. The folder "
            "is not a valid release; report the architecture (its activation config field may be missing from "
            "hf_lambda_gelu.config_fields.ACTIVATION_FIELDS)."
        )


class UnhardenedSwapError(LambdaGELUError, ValueError):
    """A λ-GELU → ReLU swap whose bound c/λ exceeds the tolerance (a naive swap) was not explicitly allowed."""

    def __init__(self, bound: float, tolerance: float) -> None:
        self.bound = bound
        self.tolerance = tolerance
        super().__init__(
            f"The swap to ReLU changes activations by up to c/min λ = {bound:.3g}, above the tolerance {tolerance:g}: "
            "the checkpoint was not hardened, so this is a naive GELU → ReLU swap. Harden it first "
            "(LambdaGELUTrainer / HardeningCallback), or pass --allow-unhardened to release a naive swap "
            "(the model card then says so)."
        )


class UnhardenedSwapWarning(LambdaGELUWarning):
    """reluize() swapped λ-GELU layers whose bound c/λ exceeds the tolerance (a naive swap)."""


class InertSettingWarning(LambdaGELUWarning):
    """A training setting was given a value that does nothing under the other settings (names what would make it act)."""


class ReluModelRequiredError(LambdaGELUError, ValueError):
    """A ReLU-only operation (ONNX export, sparsity) got a model that still has GELU or λ-GELU activations."""

    def __init__(self, what: str, found: list[str], action: str) -> None:
        self.found = found
        super().__init__(
            f"{what} still has GELU / λ-GELU activations ({', '.join(found)}); {action} needs the ReLU release. "
            "Make it with `hf-lambda-gelu reluize SRC DST` (Python: hf_lambda_gelu.save_release(model, DST)) "
            "and pass DST."
        )


class ReleaseDirNotEmptyError(LambdaGELUError, ValueError):
    """The release folder holds files that are not a previous release."""

    def __init__(self, path: Path, files: list[str]) -> None:
        self.path = path
        self.files = files
        shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
        super().__init__(
            f"Release folder {str(path)!r} is not empty and is not a previous hf-lambda-gelu release "
            f"(it holds {shown}). Choose an empty or new folder, or pass overwrite=True (CLI: --overwrite) to "
            "write the release next to those files (same-named ones are replaced by the release's, the others are left "
            "alone and never uploaded)."
        )


class NotReluModelError(LambdaGELUError, ValueError):
    """The model is neither λ-GELU (to ReLU-ize) nor a ReLU model."""

    def __init__(self, what: str, activations: dict[str, Any]) -> None:
        self.activations = activations
        super().__init__(
            f"{what} is not a ReLU model (config activation fields: {activations or 'none found'}) and has no "
            "λ-GELU module to swap. Convert and train it first (hf_lambda_gelu.convert_to_lambda_gelu), or pass "
            "the λ-GELU model itself: save_release ReLU-izes it."
        )


class NotAReleaseError(LambdaGELUError, ValueError):
    """The folder is not a (complete) ReLU release."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        super().__init__(
            f"{str(path)!r} is not a ReLU release folder: {reason}. Build one with hf_lambda_gelu.save_release "
            "(CLI: hf-lambda-gelu reluize SRC DST)."
        )


class PushError(LambdaGELUError, RuntimeError):
    """Uploading a release folder failed; the folder itself is complete and kept."""

    def __init__(self, release_dir: Path, repo_id: str, cause: str, private: bool | None = None) -> None:
        release_dir = Path(release_dir).resolve()
        self.release_dir = release_dir
        self.repo_id = repo_id
        retry = f"hf-lambda-gelu push {shlex.quote(str(release_dir))} {shlex.quote(repo_id)}"
        super().__init__(
            f"Upload to the Hub repo {repo_id!r} failed ({cause}). The local release folder is complete and intact "
            f"at {release_dir}; retry with: {retry}{' --private' if private else ''}"
        )


class ExportAuditError(LambdaGELUError, RuntimeError):
    """The exported ONNX graph failed its audit (GELU op left, an MLP ReLU not a Relu node, or no parity)."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(
            f"The ONNX export failed its audit: {'; '.join(problems)}. The full audit is in {str(path)!r}; a GELU op or "
            "a non-Relu MLP activation means the model is not a clean ReLU release, a parity failure an exporter "
            "or runtime problem (try another opset)."
        )


class LRFloorError(InvalidSettingError):
    """``hardening_lr_floor`` was set, but the learning-rate schedule cannot take a floor (it is not a ``LambdaLR``)."""


class MissingTeacherError(InvalidSettingError):
    """Feature or logit distillation is on, but no original model was given to be the teacher."""

    def __init__(self, alpha: float, logits_alpha: float) -> None:
        self.name, self.value = "distill_alpha", alpha
        ValueError.__init__(
            self,
            f"distill_alpha={alpha!r} / distill_logits_alpha={logits_alpha!r} need the original model as teacher: "
            "pass the model to the trainer (model=...), not only model_init.",
        )


class NonFiniteLossError(LambdaGELUError, ValueError):
    """Training stopped at the first NaN/inf loss, before the optimizer applied it (names the step and the cause)."""

    def __init__(self, step: int, max_steps: int, loss: float, bad_inputs: list[str]) -> None:
        self.step, self.loss, self.bad_inputs = step, loss, bad_inputs
        if bad_inputs:
            cause = (
                f"the batch holds non-finite values ({'; '.join(bad_inputs)}): remove or fix those examples in the "
                "training data"
            )
        else:
            cause = (
                "the batch's inputs are finite, so the model diverged or overflowed: lower learning_rate, set "
                "max_grad_norm, or train in bf16/fp32 instead of fp16"
            )
        super().__init__(
            f"The training loss is {loss} at optimizer step {step} of {max_steps}; training stopped before that step "
            f"changed the weights (the last checkpoint is intact): {cause}."
        )


class LambdaOptimizerError(InvalidSettingError):
    """A setting of the λ optimizer (:mod:`hf_lambda_gelu.optim`) is invalid: names the value and the fix."""


class MissingExtraError(LambdaGELUError, ImportError):
    """A feature needs a package of an optional extra that is not installed (e.g. the demo's scikit-learn)."""

    def __init__(self, feature: str, package: str, extra: str, install: str | None = None) -> None:
        self.extra = extra
        how = install or f"pip install 'hf-lambda-gelu[{extra}]' (the {extra!r} extra)"
        super().__init__(f"{feature} needs {package}, which is not installed: {how}.")


class DataFileError(LambdaGELUError, ValueError):
    """A data file (or image folder) cannot be used: names the file, what is wrong (with the line) and the fix."""

    def __init__(self, path: Any, problem: str, fix: str) -> None:
        self.path = str(path)
        super().__init__(f"Data {self.path!r}: {problem}; {fix}.")


class ModelSourceError(LambdaGELUError, ValueError):
    """A model source is neither a usable local model folder nor a Hub model id that can be fetched (says which, and the fix)."""


class UnsupportedPoolingError(LambdaGELUError, ValueError):
    """A sentence-transformers folder pools in a way relufy does not know (it knows mean, cls and max)."""

    def __init__(self, folder: Any, found: str) -> None:
        super().__init__(
            f"Sentence-transformers folder {str(folder)!r}: {found}; relufy knows one of mean, cls or max pooling. "
            "Relufy the transformer alone (a plain AutoModel folder) or change the pooling config."
        )


class SingularCalibrationError(LambdaGELUError, ValueError):
    """The refit's least-squares system of a down-projection is singular: too little calibration data for its ridge."""

    def __init__(self, layer: str, tokens: int, width: int, ridge: float, why: str) -> None:
        self.layer = layer
        super().__init__(
            f"Refit of {layer!r}: {why} ({tokens} calibration tokens for {width} inputs, ridge {ridge:g}). "
            "Give more (and more varied) calibration data, or a larger ridge (refit_ridge / --refit-ridge)."
        )


class UnsupportedRefitError(LambdaGELUError, ValueError):
    """The refit cannot address this family's MLPs (names the family and why); the swap and distillation still can."""

    def __init__(self, family: str, why: str) -> None:
        self.family = family
        super().__init__(
            f"The refit does not support {family!r} models: {why}. Use road 'swap' or 'lambda' (distillation only)."
        )


class ReleaseDirBusyError(ReleaseDirNotEmptyError):
    """Another process is saving a release into the same folder right now (it holds the folder's lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files = []
        ValueError.__init__(
            self,
            f"Release folder {str(path)!r} is in use: another process is saving a release into it right now. Wait "
            "for it to finish, or choose another folder; two saves into one folder would replace each other's release.",
        )


class ReloadCheckedFileError(LambdaGELUError, ValueError):
    """A model file the release gate reloaded cannot be re-recorded in the manifest after it changed."""

    def __init__(self, path: Path, names: list[str]) -> None:
        self.path = path
        self.names = names
        super().__init__(
            f"{names} in the release {str(path)!r} were reloaded and checked by the release gate: a changed model "
            "file cannot be recorded after the fact. Write the release again with hf_lambda_gelu.save_release "
            "(CLI: hf-lambda-gelu reluize SRC DST)."
        )


class OutputDirNotEmptyError(LambdaGELUError, ValueError):
    """An output folder holds files that are not an earlier output of the same command (they would be replaced)."""

    def __init__(self, path: str | Path, holds: str, flag: str) -> None:
        self.path = Path(path)
        super().__init__(
            f"Output folder {str(path)!r} is not empty and {holds}: writing there would replace same-named files. "
            f"Choose a new or empty folder, or pass {flag} to write into it anyway."
        )


class CheckpointDiskFullError(LambdaGELUError, OSError):
    """No space was left on the device while a ``checkpoint-N`` folder was written; the partial folder is removed.

    ``errno`` is ``ENOSPC``; the original error (torch's ``basic_ios::clear: iostream error``, safetensors' I/O
    error, an ``OSError``) is its ``__cause__``.
    """

    def __init__(self, folder: str | Path, written: int, free: int, last: str | Path | None, last_size: int) -> None:
        self.folder, self.free = Path(folder), free
        if last is None:
            resume = "there is no earlier complete checkpoint to resume from"
        else:
            resume = f"the last complete one, {Path(last).name} ({_size(last_size)}), is intact: resume from it"
        super().__init__(
            f"No space left while writing {self.folder.name} in {str(self.folder.parent)!r}: the device holding it "
            f"has {_size(free)} free. The partial {self.folder.name} ({_size(written)} written) was removed so that no "
            f"resume picks it up; {resume}. Free space on that device, set save_total_limit to keep fewer "
            "checkpoints, or choose an output_dir on a device with more room."
        )
        self.errno = errno.ENOSPC


def _size(n: int) -> str:
    """``n`` bytes in a human unit (``"512.0 KiB"``)."""
    value, unit = float(n), "bytes"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"


class ModelFolderError(LambdaGELUError, ValueError):
    """A file of a model folder the package did not write cannot be used (malformed JSON, a path that leaves the
    folder): names the file or entry, what is wrong and the fix."""

    def __init__(self, path: Any, problem: str, fix: str) -> None:
        self.path = str(path)
        super().__init__(f"Model folder file {self.path!r}: {problem}; {fix}.")


class OutputDirOverlapError(LambdaGELUError, ValueError):
    """The output folder is the input model folder, lies inside it or contains it: writing would replace or mix
    the original's files (refused whatever the flags)."""

    def __init__(self, output_dir: str | Path, model_dir: str | Path, how: str) -> None:
        self.output_dir, self.model_dir = Path(output_dir), Path(model_dir)
        super().__init__(
            f"Output folder {str(output_dir)!r} {how} the model folder {str(model_dir)!r}: writing there would replace "
            "or mix the original's files (no flag allows it). Choose an output folder outside the model folder."
        )


class ReleaseDiskFullError(LambdaGELUError, OSError):
    """No space was left on the device while a release was written; the folder keeps what it held before.

    ``errno`` is ``ENOSPC``; the writer's error (safetensors' I/O error, an ``OSError``) is its ``__cause__``.
    """

    def __init__(self, folder: str | Path, free: int, previous: bool) -> None:
        self.folder, self.free = Path(folder), free
        kept = "the previous release in it is kept as it was" if previous else "nothing of the release was written"
        super().__init__(
            f"No space left while writing the release into {str(folder)!r}: the device holding it has {_size(free)} "
            f"free; {kept}. Free space on that device, or choose a folder on a device with more room."
        )
        self.errno = errno.ENOSPC
