"""Exceptions raised for bad input, each naming the offending value and the fix."""

from __future__ import annotations

__all__ = ["DataFileError", "NoGELUFoundError", "NotLambdaGELUModelError", "ReluModelRequiredError", "UnseenLabelError"]


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


class DataFileError(ValueError):
    """A local data file (or folder) a recipe was given cannot be used; names the file, the line, the fix."""

    def __init__(self, path: str, problem: str, fix: str, line: int | None = None) -> None:
        self.path, self.problem, self.line = str(path), problem, line
        where = f"{self.path!r}" + (f", line {line}" if line is not None else "")
        super().__init__(f"Data file {where}: {problem}. {fix}")


class UnseenLabelError(ValueError):
    """Labels that appear in evaluation data but never in the training data (classes never trained)."""

    def __init__(self, labels: list, where: str, column: str, train: str | None = None) -> None:
        self.labels = labels
        train = f"the training data ({train})" if train else "the training data"
        super().__init__(
            f"Labels {labels} of column {column!r} appear in {where} but not in {train}: the model would get "
            "classes it never trains on. Fix those labels, or add training examples for them."
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
