"""The release gate: a saved checkpoint must reload, in a fresh process, as the model in memory.

``save_pretrained`` writes weights and config; what a user gets back is rebuilt from the config. A
ReLU release whose config misses one activation field reloads partly GELU, silently. The gate
checks the one thing that matters, for any architecture: reload the folder in a **fresh subprocess**
with stock transformers (``hf_lambda_gelu`` not imported), run the same batch, compare outputs
(max |Δ| / max |output| ≤ 1e-4), and name the modules whose type or λ differs after the reload.
The worker process, the batch and the tolerances: docs/design.md.
"""

from __future__ import annotations

import atexit
import inspect
import json
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InvalidInputError, ReleaseReloadError
from ..gelu_remnants import functional_gelus
from ..temp_dirs import locked_temp_dir
from . import reload_worker

__all__ = ["DEFAULT_TOLERANCE", "ReloadCase", "ReloadResult", "check_reload", "dummy_inputs", "verify_reloads"]

DEFAULT_TOLERANCE = 1e-4
#: Prefix of the folders in TMPDIR that hold a reload's inputs and jobs (stale ones are removed by the next run).
RELOAD_TEMP_PREFIX = "hf-lambda-gelu-reload-"


class _Worker:
    """One reload worker subprocess (see :mod:`hf_lambda_gelu.release.reload_worker`), started lazily."""

    def __init__(self, with_package: bool) -> None:
        self.with_package = with_package
        self.proc: subprocess.Popen | None = None
        self.log = tempfile.TemporaryFile(mode="w+", prefix=RELOAD_TEMP_PREFIX)
        self.lock = threading.Lock()

    def _start(self) -> subprocess.Popen:
        launcher = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"
        args = [sys.executable, "-c", launcher, reload_worker.__file__, *(["--with-package"] * self.with_package)]
        return subprocess.Popen(
            args,
            cwd=tempfile.gettempdir(),  # nothing importable by accident (not the caller's folder)
            env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )

    def request(self, jobs_path: Path, results_path: Path) -> None:
        with self.lock:
            for attempt in (1, 2):
                if self.proc is None or self.proc.poll() is not None:
                    self.proc = self._start()
                try:
                    self.proc.stdin.write(f"{jobs_path}\t{results_path}\n")
                    self.proc.stdin.flush()
                    if self.proc.stdout.readline().strip() == "done":
                        return
                except (BrokenPipeError, OSError):
                    pass
                self.proc.kill()
                self.proc = None
                if attempt == 2:
                    self.log.seek(0)
                    raise RuntimeError(f"The reload worker subprocess failed:\n{self.log.read()[-3000:]}")

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


_WORKERS = {flag: _Worker(flag) for flag in (False, True)}
atexit.register(lambda: [worker.close() for worker in _WORKERS.values()])


def _image_size(config: Any) -> int:
    size = getattr(config, "image_size", 224)
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def dummy_inputs(model: nn.Module, batch_size: int = 2, seq_len: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """A small deterministic batch for ``model`` built from its config and forward signature.

    Covers token ids (``input_ids``, plus ``decoder_input_ids`` for encoder-decoders), images
    (``pixel_values``), audio features (``input_features``, Whisper-style: 2·max_source_positions frames)
    and raw audio (``input_values``); two-tower models (CLIP, SigLIP) get both text and images.

    Raises:
        InvalidInputError: the model takes an input this function cannot build; pass a real batch instead.

    >>> from transformers import BertConfig, BertModel
    >>> cfg = BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8)
    >>> sorted(dummy_inputs(BertModel(cfg)))
    ['input_ids']
    """
    config = model.config
    params = inspect.signature(model.forward).parameters
    g = torch.Generator().manual_seed(seed)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    vision = getattr(config, "vision_config", None) or config
    wanted = {getattr(model, "main_input_name", "input_ids")}
    if hasattr(config, "text_config") and hasattr(config, "vision_config"):
        wanted |= {"input_ids", "pixel_values"}
    inputs: dict[str, torch.Tensor] = {}
    for name in sorted(wanted):
        if name == "input_ids":
            inputs[name] = torch.randint(0, text.vocab_size, (batch_size, seq_len), generator=g)
        elif name == "pixel_values":
            size, channels = _image_size(vision), getattr(vision, "num_channels", 3)
            inputs[name] = torch.randn(batch_size, channels, size, size, generator=g)
        elif name == "input_features":
            frames = 2 * getattr(config, "max_source_positions", 1500)
            inputs[name] = torch.randn(batch_size, config.num_mel_bins, frames, generator=g)
        elif name == "input_values":
            inputs[name] = torch.randn(batch_size, 1600, generator=g)
        else:
            raise InvalidInputError(
                f"Cannot build a dummy batch for {type(model).__name__} (main input {name!r}); pass a real batch "
                "(inputs=...) to the release check."
            )
    if getattr(config, "is_encoder_decoder", False) and "decoder_input_ids" in params:
        inputs["decoder_input_ids"] = torch.randint(0, text.vocab_size, (batch_size, 4), generator=g)
    return inputs


@dataclass
class ReloadCase:
    """One saved folder to check against the model in memory it was saved from."""

    model: nn.Module
    folder: str | os.PathLike
    inputs: dict[str, torch.Tensor] | None = None
    #: import hf_lambda_gelu before reloading (λ-GELU checkpoints); False: stock transformers only.
    with_package: bool = False


@dataclass
class ReloadResult:
    """What came back from one reload: the relative output difference and the modules that differ."""

    folder: str
    max_rel_diff: float = float("inf")
    mismatched_modules: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    functional_gelus: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    tolerance: float = DEFAULT_TOLERANCE

    @property
    def ok(self) -> bool:
        """Outputs agree within the tolerance, no module differs and no weight was left unused."""
        return (
            self.error is None
            and self.max_rel_diff <= self.tolerance
            and not self.mismatched_modules
            and not self.unexpected_keys
        )

    def describe(self) -> str:
        """One paragraph for an error message."""
        if self.error is not None:
            return f"reloading {self.folder} failed: {self.error}"
        parts = [f"outputs differ by {self.max_rel_diff:.3g} (relative; tolerance {self.tolerance:g})"]
        if self.mismatched_modules:
            parts.append("modules that came back different: " + "; ".join(self.mismatched_modules))
        if self.unexpected_keys:
            parts.append(f"weights the reload did not use: {self.unexpected_keys[:5]}")
        return ", ".join(parts)


def _to(value: Any, device: torch.device) -> Any:
    return value.to(device) if isinstance(value, torch.Tensor) else value


def _tolerance_for(model: nn.Module, tolerance: float) -> float:
    """The tolerance, widened for a half-precision model (reloaded on the CPU in its dtype: rounding differs)."""
    param = next(model.parameters(), None)
    if param is None or not param.is_floating_point() or torch.finfo(param.dtype).bits > 16:
        return tolerance
    return max(tolerance, 4 * torch.finfo(param.dtype).eps)


def _relative_diff(expected: list[torch.Tensor], got: list[torch.Tensor]) -> float:
    if len(expected) != len(got) or any(a.shape != b.shape for a, b in zip(expected, got)):
        return float("inf")
    scale = max((a.abs().max().item() for a in expected if a.numel()), default=0.0) or 1.0
    diff = max(((a - b).abs().max().item() for a, b in zip(expected, got) if a.numel()), default=0.0)
    return diff / scale


def _mismatches(model: nn.Module, got: dict[str, Any]) -> list[str]:
    here, there = reload_worker.activation_types(model), got["activations"]
    out = [
        f"{name}: {cls} in memory, {there.get(name, 'absent')} after reload"
        for name, cls in here.items()
        if there.get(name) != cls
    ]
    mine = reload_worker.lambda_values(model)
    for name, lams in mine.items():
        back = got["lambdas"].get(name)
        if back is not None and not torch.allclose(torch.tensor(lams), torch.tensor(back), rtol=1e-5, atol=0.0):
            out.append(f"{name}: λ {min(lams):.6g} in memory, {min(back):.6g} after reload")
    return out


def verify_reloads(cases: list[ReloadCase], *, tolerance: float = DEFAULT_TOLERANCE) -> list[ReloadResult]:
    """Reload every case's folder in a subprocess (one request) and compare with its model in memory.

    Args:
        cases: the folders (already written with ``save_pretrained``) and the models they came from.
        tolerance: largest accepted relative difference of the outputs.

    Returns:
        One :class:`ReloadResult` per case, in order (check ``.ok``).

    >>> verify_reloads([ReloadCase(model, "release")])[0].ok  # doctest: +SKIP
    True
    """
    expected, functional = [], []
    with locked_temp_dir(RELOAD_TEMP_PREFIX) as tmp:
        jobs = []
        for i, case in enumerate(cases):
            inputs = case.inputs if case.inputs is not None else dummy_inputs(case.model)
            param = next(case.model.parameters(), None)
            device, dtype = (param.device, param.dtype) if param is not None else (torch.device("cpu"), torch.float32)
            output, found = functional_gelus(case.model, {k: _to(v, device) for k, v in inputs.items()})
            expected.append(reload_worker.flatten_outputs(output))
            functional.append(found)
            path = Path(tmp) / f"inputs{i}.pt"
            torch.save({k: v.detach().cpu() for k, v in inputs.items()}, path)
            jobs.append(
                {
                    "folder": str(Path(case.folder).resolve()),
                    "model_class": type(case.model).__name__,
                    "inputs": str(path),
                    "with_package": case.with_package,
                    "dtype": str(dtype).removeprefix("torch."),
                }
            )
        returned: list[dict[str, Any] | None] = [None] * len(jobs)
        for with_package, worker in _WORKERS.items():
            picked = [i for i, job in enumerate(jobs) if job["with_package"] == with_package]
            if not picked:
                continue
            jobs_path, results_path = (
                Path(tmp) / f"jobs{with_package:d}.json",
                Path(tmp) / f"results{with_package:d}.pt",
            )
            jobs_path.write_text(json.dumps([jobs[i] for i in picked]), encoding="utf-8")
            worker.request(jobs_path, results_path)
            for i, got in zip(picked, torch.load(results_path, weights_only=True)):
                returned[i] = got
    results = []
    for case, want, found, got in zip(cases, expected, functional, returned):
        result = ReloadResult(
            str(case.folder),
            functional_gelus=found,
            tolerance=_tolerance_for(case.model, tolerance),
            error=got["error"],
        )
        if got["error"] is None:
            result.max_rel_diff = _relative_diff(want, got["outputs"])
            result.mismatched_modules = _mismatches(case.model, got)
            result.unexpected_keys = got["unexpected_keys"]
        results.append(result)
    return results


def check_reload(
    model: nn.Module,
    folder: str | os.PathLike,
    *,
    inputs: dict[str, torch.Tensor] | None = None,
    with_package: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ReloadResult:
    """Reload ``folder`` in a fresh process and raise unless it matches ``model`` (see :func:`verify_reloads`).

    Args:
        model: the model in memory that ``folder`` was saved from.
        folder: the saved checkpoint.
        inputs: a real batch (default :func:`dummy_inputs`).
        with_package: reload with ``hf_lambda_gelu`` imported (λ-GELU checkpoints).
        tolerance: largest accepted relative output difference.

    Raises:
        ReleaseReloadError: the reload differs; the message names the modules that came back different.

    >>> check_reload(model, "release")  # doctest: +SKIP
    """
    (result,) = verify_reloads([ReloadCase(model, folder, inputs, with_package)], tolerance=tolerance)
    if not result.ok:
        raise ReleaseReloadError(str(folder), result.describe(), with_package=with_package)
    return result
