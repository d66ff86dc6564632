"""Exceptions raised for bad input, each naming the offending value and the fix."""

from __future__ import annotations

__all__ = ["NoGELUFoundError", "NotLambdaGELUModelError", "ReluModelRequiredError"]


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


class ReluModelRequiredError(ValueError):
    """A ReLU-only operation (ONNX export, sparsity) got a model that still has GELU or λ-GELU activations."""

    def __init__(self, what: str, found: list[str], action: str) -> None:
        self.found = found
        super().__init__(
            f"{what} still has GELU / λ-GELU activations ({', '.join(found)}); {action} needs the ReLU release. "
            "Make it with `hf-lambda-gelu reluize SRC DST` (Python: hf_lambda_gelu.save_release(model, DST)) "
            "and pass DST."
        )
