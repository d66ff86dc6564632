"""Exceptions raised for bad input, each naming the offending value and the fix."""

from __future__ import annotations

__all__ = [
    "GELURemnantsError",
    "MissingExtraError",
    "NoGELUFoundError",
    "NotLambdaGELUModelError",
    "ReleaseReloadError",
    "ReluModelRequiredError",
    "UncontrolledGELUError",
    "UnhardenedSwapError",
    "UnhardenedSwapWarning",
]


class NoGELUFoundError(ValueError):
    """The model has no GELU activation that λ-GELU can replace."""

    def __init__(self, found: list[str]) -> None:
        self.found = found
        listed = ", ".join(found) if found else "none"
        super().__init__(
            "No GELU activation to convert to λ-GELU. Activation modules found: "
            f"[{listed}]. Convertible: GELUActivation, nn.GELU, NewGELUActivation, GELUTanh/"
            "PytorchGELUTanh, FastGELUActivation, AccurateGELUActivation. Check the model (or filter_fn)."
        )


class NotLambdaGELUModelError(ValueError):
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


class GELURemnantsError(ValueError):
    """A release would keep GELUs no config field controls and still be called "ReLU"."""

    def __init__(self, what: str, remnants: dict[str, str]) -> None:
        self.remnants = remnants
        listed = "; ".join(f"{name or '<model>'}: {kind}" for name, kind in remnants.items())
        super().__init__(
            f"{what} keeps GELUs that no config field controls ({listed}); they stay GELU in the release, so it is "
            "not a plain ReLU model. Pass allow_gelu_remnants=True (CLI: --allow-gelu-remnants; recipes: "
            "--allow_gelu_remnants true) to release it anyway: the report and the model card then list these GELUs."
        )


class ReleaseReloadError(ValueError):
    """A saved checkpoint does not reload (fresh process) as the model in memory."""

    def __init__(self, folder: str, details: str, *, with_package: bool = False) -> None:
        self.folder = folder
        how = "with hf_lambda_gelu imported" if with_package else "with stock transformers"
        super().__init__(
            f"The checkpoint in {folder!r} does not reload {how} as the model that was saved: {details}. The folder "
            "is not a valid release; report the architecture (its activation config field may be missing from "
            "hf_lambda_gelu.config_fields.ACTIVATION_FIELDS)."
        )


class UnhardenedSwapError(ValueError):
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


class UnhardenedSwapWarning(UserWarning):
    """reluize() swapped λ-GELU layers whose bound c/λ exceeds the tolerance (a naive swap)."""


class ReluModelRequiredError(ValueError):
    """A ReLU-only operation (ONNX export, sparsity) got a model that still has GELU or λ-GELU activations."""

    def __init__(self, what: str, found: list[str], action: str) -> None:
        self.found = found
        super().__init__(
            f"{what} still has GELU / λ-GELU activations ({', '.join(found)}); {action} needs the ReLU release. "
            "Make it with `hf-lambda-gelu reluize SRC DST` (Python: hf_lambda_gelu.save_release(model, DST)) "
            "and pass DST."
        )


class MissingExtraError(ImportError):
    """A feature needs a package of an optional extra that is not installed (e.g. the demo's scikit-learn)."""

    def __init__(self, feature: str, package: str, extra: str) -> None:
        self.extra = extra
        super().__init__(
            f"{feature} needs {package}, which is not installed: pip install 'hf-lambda-gelu[{extra}]' "
            f"(the {extra!r} extra)."
        )
