"""The refit: a ReLU twin in one calibration pass, by a layer-wise least-squares refit of each MLP's down-projection.

After the GELU → ReLU swap, each MLP's down-projection (BERT's ``output.dense``, GPT-2's ``c_proj``, NeoX's
``dense_4h_to_h``, T5's ``wo``, Gemma's ``down_proj``...) is refit, from the bottom block up, so that on
unlabeled calibration inputs ``W' · x + b'`` reproduces what the original's down-projection outputs there.
``x`` is the twin's own input to it (``ReLU(h)``, or ``ReLU(gate) · up`` in a gated MLP), with the lower
blocks already refit, so their drift is corrected as it goes (sequential reconstruction, as GPTQ does).

How it runs (docs/design.md, "The refit"):

- **Finding the down-projections: one trace.** One calibration batch runs through the original with hooks;
  the down-projection of an activation is the first ``nn.Linear`` / ``Conv1D`` called after it whose input
  width is the activation's output width (an up-projection called after the activation, as in a gated MLP,
  takes the model width). The block is the activation's entry in the outermost ``nn.ModuleList`` above it.
  An activation called more than once per forward (ALBERT shares one layer across depths) is refused;
  one outside every ``ModuleList`` (a prediction head's), or with no projection of its width after it (a
  convolutional stem's, as in wav2vec2), is swapped and left as it is (``not_refit`` in the report).
- **Cached block inputs.** Each block's inputs are caught once by a forward pre-hook (the whole forward only
  when the blocks get different arguments, as T5's relative position bias or a second stack do), then the
  blocks run in turn on cached hidden states: the original's block once, the twin's twice (statistics,
  then its refit output for the next block) — about three forward passes of the calibration set in all.
- **Numerics.** ``XᵀX`` and ``XᵀY`` are summed batch by batch in float64 (whatever the model's dtype), padding
  masked out, one block's statistics at a time: peak memory is O(d_ff²) plus the cached hidden states. The
  unpadded rows of successive batches are pooled (``_PRODUCT_ROWS``) and multiplied in float32 at once (float64
  GEMMs cost 2-4× more on CPUs and far more on GPUs); over a few thousand rows the product's relative error is
  ~1e-6, three orders below the default ridge. The
  ridge pulls toward the original weights, ``ridge`` × the mean diagonal of ``XᵀX`` (a unit the calibration
  never fires keeps its weights); the bias is not penalised. A system that is singular at that ridge is
  refused (:class:`~hf_lambda_gelu.errors.SingularCalibrationError`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers.pytorch_utils import Conv1D

from .errors import InvalidSettingError, SingularCalibrationError, UnsupportedRefitError
from .fidelity import _device
from .gelu_kinds import GELU_KINDS, activation_kind

__all__ = ["DEFAULT_REFIT_RIDGE", "RefitLayer", "RefitReport", "find_down_projections", "refit_down_projections"]

logger = logging.getLogger(__name__)

#: Ridge of the refit, relative to the mean diagonal of XᵀX (measured well conditioned on all-MiniLM-L6-v2).
DEFAULT_REFIT_RIDGE = 1e-3
_PROJECTIONS = (nn.Linear, Conv1D)
_NOT_INPUTS = ("labels", "label", "label_ids")
#: Rows (unpadded tokens) pooled before one float32 product is added to the float64 sums: one large GEMM instead of
#: a skinny one per batch (short texts give a few dozen rows a batch); the product's relative error stays ~1e-6.
_PRODUCT_ROWS = 4096
_SINGULAR_PIVOT = 1e-14  # smallest (pivot / largest pivot)² of the Cholesky factor that counts as regular


@dataclass
class RefitLayer:
    """One refit down-projection: its name, the calibration tokens it saw, its seconds, and its output's
    relative squared error to the original's (``‖XW − Y‖² / ‖Y‖²``) with the original weights and after the refit."""

    name: str
    activation: str
    tokens: int
    seconds: float
    error_before: float
    error_after: float


@dataclass
class RefitReport:
    """What the refit did: per down-projection :class:`RefitLayer`, the activations swapped without a refit
    (outside every block), the calibration size, the ridge and the seconds of the whole refit."""

    layers: list[RefitLayer] = field(default_factory=list)
    not_refit: list[str] = field(default_factory=list)
    calibration_examples: int = 0
    ridge: float = DEFAULT_REFIT_RIDGE
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (inside a fidelity or reluization report).

        >>> RefitReport(calibration_examples=8).to_dict()["calibration_examples"]
        8
        """
        return asdict(self)


@dataclass
class _Site:
    """An activation, its block and its down-projection (qualified names)."""

    activation: str
    projection: str | None
    stack: str | None
    index: int | None


class _Stop(Exception):
    """Raised by a capture hook: the forward has run as far as needed."""


def _model_inputs(batch: Mapping[str, Any], device: torch.device, model: nn.Module) -> dict[str, Any]:
    inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items() if k not in _NOT_INPUTS}
    if getattr(getattr(model, "config", None), "use_cache", None) is not None:
        inputs.setdefault("use_cache", False)  # no cache object travels between the cached block calls
    return inputs


def _block_of(model: nn.Module, name: str) -> tuple[str | None, int | None]:
    """The outermost ``ModuleList`` above ``name`` and the index in it (None, None outside every one)."""
    parts = name.split(".")
    for i in range(len(parts) - 1):
        prefix = ".".join(parts[:i]) if i else ""
        parent = model.get_submodule(prefix) if prefix else model
        if isinstance(parent, nn.ModuleList) and parts[i].isdigit():
            return prefix, int(parts[i])
    return None, None


def _swapped(student: nn.Module, teacher: nn.Module) -> list[str]:
    """Names where the teacher has a GELU (or λ-GELU) and the student a ReLU: the activations the swap replaced."""
    student_modules = dict(student.named_modules())
    names = []
    for name, module in teacher.named_modules():
        if activation_kind(module) in GELU_KINDS and isinstance(student_modules.get(name), nn.ReLU):
            names.append(name)
    return names


def find_down_projections(model: nn.Module, activations: list[str], batch: Mapping[str, Any]) -> list[_Site]:
    """Trace one batch through ``model`` and find each activation's down-projection and block.

    Args:
        model: the original (GELU) model.
        activations: qualified names of the activations to trace.
        batch: one calibration batch (model inputs).

    Raises:
        UnsupportedRefitError: an activation runs more than once per forward (shared across depths), or no
            projection of its width follows it.
    """
    calls: list[tuple[str, str, int]] = []
    hooks = []
    wanted = set(activations)
    for name, module in model.named_modules():
        if name in wanted:
            hooks.append(
                module.register_forward_hook(lambda m, a, out, n=name: calls.append(("act", n, out.shape[-1])))
            )
        elif isinstance(module, _PROJECTIONS):
            hooks.append(
                module.register_forward_pre_hook(lambda m, a, n=name: calls.append(("proj", n, a[0].shape[-1])))
            )
    try:
        with torch.no_grad():
            model(**_model_inputs(batch, _device(model), model))
    finally:
        for hook in hooks:
            hook.remove()
    family = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
    sites, seen = [], set()
    for i, (kind, name, width) in enumerate(calls):
        if kind != "act":
            continue
        if name in seen:
            raise UnsupportedRefitError(
                family, f"the activation {name} runs more than once per forward (shared layers)"
            )
        seen.add(name)
        projection = next((n for k, n, w in calls[i + 1 :] if k == "proj" and w == width), None)
        stack, index = _block_of(model, name)
        if projection is None or stack is None:  # a convolutional stem's or a head's activation: swapped as it is
            sites.append(_Site(name, None, None, None))
            continue
        if _block_of(model, projection) != (stack, index):
            raise UnsupportedRefitError(family, f"{name}'s down-projection {projection} lies outside its block")
        sites.append(_Site(name, projection, stack, index))
    return sites


def _split(args: tuple, kwargs: dict) -> tuple[torch.Tensor, tuple, dict]:
    """A block call's hidden state, and its other arguments."""
    if args:
        return args[0], args[1:], kwargs
    rest = dict(kwargs)
    return rest.pop("hidden_states"), (), rest


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and not isinstance(a, torch.Tensor) and a == b


def _capture(model: nn.Module, blocks: nn.ModuleList, batches: list[dict]) -> list[tuple[torch.Tensor, list]]:
    """For each batch: the hidden state entering ``blocks[0]`` and, per block, its other arguments.

    The first batch runs through every block; when every block got the same other arguments there (BERT,
    GPT-2, NeoX, Gemma...), the other batches stop at the first block and share its arguments.
    """
    record: list[tuple[tuple, dict]] = []
    stop_at = {"index": len(blocks) - 1}  # the first batch stops at the last block, having seen every block's call

    def hook(index: int):
        def pre_hook(module, args, kwargs):
            hidden, rest, rest_kwargs = _split(args, kwargs)
            record.append((hidden if index == 0 else None, rest, rest_kwargs))
            if index >= stop_at["index"]:
                raise _Stop

        return pre_hook

    hooks = [block.register_forward_pre_hook(hook(i), with_kwargs=True) for i, block in enumerate(blocks)]
    cached = []
    try:
        with torch.no_grad():
            for number, batch in enumerate(batches):
                record.clear()
                try:
                    model(**batch)
                except _Stop:
                    pass
                if len(record) < (1 if number else len(blocks)):
                    raise UnsupportedRefitError(
                        type(model).__name__, "its blocks did not all run on a calibration batch"
                    )
                if number == 0:
                    shared = all(_same(r[1:], record[0][1:]) for r in record[1 : len(blocks)])
                    stop_at["index"] = 0 if shared else len(blocks)
                calls = [r[1:] for r in record[: len(blocks)]]
                cached.append((record[0][0], calls if len(calls) == len(blocks) else calls * len(blocks)))
    finally:
        for h in hooks:
            h.remove()
    return cached


def _row_mask(batch: Mapping[str, Any], shape: torch.Size) -> torch.Tensor | None:
    """The padding mask of a down-projection input of leading shape ``shape`` (None: every row counts)."""
    for key in ("attention_mask", "decoder_attention_mask"):
        mask = batch.get(key)
        if isinstance(mask, torch.Tensor) and mask.shape == shape:
            return mask.reshape(-1).bool()
    return None


class _Stats:
    """Σ XᵀX, Σ XᵀY and Σ‖Y‖² in float64, X with a column of ones when the projection has a bias."""

    def __init__(self, projection: nn.Module) -> None:
        self.projection = projection
        self.bias = projection.bias is not None
        self.xtx: torch.Tensor | None = None
        self.xty: torch.Tensor | None = None
        self.yy = 0.0
        self.tokens = 0
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._pending_rows = 0

    def add(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> None:
        """Add one batch's unpadded rows; they are pooled until ``_PRODUCT_ROWS`` rows, then multiplied at once."""
        x = x.reshape(-1, x.shape[-1]).float()
        y = y.reshape(-1, y.shape[-1]).float()
        if mask is not None:
            x, y = x[mask], y[mask]
        self._pending.append((x, y))
        self._pending_rows += x.shape[0]
        if self._pending_rows >= _PRODUCT_ROWS:
            self.flush()

    def flush(self) -> None:
        """Multiply the pooled rows (in float32) and add the products to the float64 sums."""
        if not self._pending:
            return
        x = torch.cat([x for x, _ in self._pending])
        y = torch.cat([y for _, y in self._pending])
        self._pending, self._pending_rows = [], 0
        if self.bias:
            x = torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)
        if self.xtx is None:
            self.xtx = x.new_zeros(x.shape[1], x.shape[1], dtype=torch.float64)
            self.xty = x.new_zeros(x.shape[1], y.shape[1], dtype=torch.float64)
        self.xtx += (x.T @ x).double()
        self.xty += (x.T @ y).double()
        self.yy += float(y.double().square().sum())
        self.tokens += x.shape[0]

    def original(self) -> torch.Tensor:
        """The projection's weights as the solution's shape ((d_in [+1]) × d_out)."""
        p = self.projection
        weight = p.weight.detach().to(torch.float64)
        theta = weight if isinstance(p, Conv1D) else weight.T
        if self.bias:
            theta = torch.cat([theta, p.bias.detach().to(torch.float64)[None]], dim=0)
        return theta.to(self.xtx.device)

    def _relative(self, sq: torch.Tensor) -> float:
        return float(sq.clamp_min(0)) / max(self.yy, 1e-300)

    def solve(self, ridge: float, name: str) -> tuple[torch.Tensor, float, float]:
        """The refit weights, and the relative squared error ‖Xθ − Y‖² / ‖Y‖² before (original weights) and after."""
        self.flush()
        d_in = self.xtx.shape[0] - int(self.bias)
        scale = float(self.xtx.diagonal()[:d_in].mean())
        if not scale > 0 or not torch.isfinite(self.xtx).all():
            raise SingularCalibrationError(name, self.tokens, d_in, ridge, "the activations feeding it are all zero")
        penalty = torch.zeros_like(self.xtx.diagonal())
        penalty[:d_in] = ridge * scale
        system = self.xtx + torch.diag(penalty)
        factor, info = torch.linalg.cholesky_ex(system)
        pivots = factor.diagonal() ** 2
        if int(info) != 0 or float(pivots.min() / pivots.max()) < _SINGULAR_PIVOT:
            raise SingularCalibrationError(name, self.tokens, d_in, ridge, "the system is singular at this ridge")
        original = self.original()
        rhs = self.xty + penalty[:, None] * original  # the ridge pulls toward the original weights
        theta = torch.cholesky_solve(rhs, factor)
        # before: θ0ᵀAθ0 − 2θ0ᵀB + ‖Y‖², its one large product in float32 (a report figure, not the solution)
        a_theta0 = (self.xtx.float() @ original.float()).double()
        before = (original * a_theta0).sum() - 2 * (original * self.xty).sum() + self.yy
        # after: (A + P)θ = B + Pθ0 gives Aθ = B + P(θ0 − θ), so no large product at all
        after = self.yy - (theta * self.xty).sum() + (theta * penalty[:, None] * (original - theta)).sum()
        return theta, self._relative(before), self._relative(after)

    def assign(self, theta: torch.Tensor) -> None:
        p = self.projection
        d_in = theta.shape[0] - int(self.bias)
        weight = theta[:d_in] if isinstance(p, Conv1D) else theta[:d_in].T
        with torch.no_grad():
            p.weight.copy_(weight.to(p.weight.dtype))
            if self.bias:
                p.bias.copy_(theta[d_in].to(p.bias.dtype))


def _keep(into: dict[str, torch.Tensor], name: str, output: bool = False) -> Any:
    """A forward hook that keeps a module's input (or, with ``output``, its output) under ``name``."""

    def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        into[name] = out if output else args[0]

    return hook


def _run_block(block: nn.Module, hidden: torch.Tensor, call: tuple) -> torch.Tensor:
    rest, kwargs = call
    out = block(hidden, *rest, **kwargs)
    return out[0] if isinstance(out, (tuple, list)) else out


def refit_down_projections(
    student: nn.Module,
    teacher: nn.Module,
    calibration: Iterable[Mapping[str, Any]],
    *,
    ridge: float = DEFAULT_REFIT_RIDGE,
    progress: bool = True,
) -> RefitReport:
    """Refit, in place, the down-projection after every activation the GELU → ReLU swap replaced in ``student``.

    Args:
        student: the swapped model (ReLU where ``teacher`` has GELU); changed in place.
        teacher: the original GELU model, same architecture (not changed).
        calibration: batches of model inputs (e.g. a ``DataLoader``); labels are ignored.
        ridge: the ridge, relative to the mean diagonal of ``XᵀX`` (> 0; 0 only with far more tokens than d_ff).
        progress: show a progress bar over the blocks.

    Returns:
        The :class:`RefitReport` (per layer tokens, seconds and relative error before/after).

    Raises:
        InvalidSettingError: a negative or non-finite ridge, or no calibration batch.
        UnsupportedRefitError: a family whose MLPs the refit cannot address (it names the family and why).
        SingularCalibrationError: too little calibration data for a layer at this ridge.

    >>> import torch
    >>> from transformers import BertConfig, BertModel
    >>> from hf_lambda_gelu import gelu_to_relu
    >>> from hf_lambda_gelu.distillation import frozen_copy
    >>> model = BertModel(BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24))
    >>> teacher = frozen_copy(model)
    >>> _ = gelu_to_relu(model)
    >>> batches = [{"input_ids": torch.randint(5, 100, (4, 12))} for _ in range(4)]
    >>> report = refit_down_projections(model, teacher, batches, progress=False)
    >>> [layer.error_after < layer.error_before for layer in report.layers]
    [True, True]
    """
    if not (ridge >= 0 and ridge < float("inf")):
        raise InvalidSettingError("ridge", ridge, "use a finite ridge ≥ 0 (default 1e-3).")
    start = time.perf_counter()
    device = _device(student)
    batches = [_model_inputs(b, device, student) for b in calibration]
    if not batches:
        raise InvalidSettingError("calibration", 0, "give at least one calibration batch.")
    sites = find_down_projections(teacher, _swapped(student, teacher), batches[0])
    report = RefitReport(
        not_refit=[s.activation for s in sites if s.stack is None],
        calibration_examples=sum(len(next(v for v in b.values() if isinstance(v, torch.Tensor))) for b in batches),
        ridge=ridge,
    )
    stacks: dict[str, dict[int, list[_Site]]] = {}
    for site in sites:
        if site.stack is not None:
            stacks.setdefault(site.stack, {}).setdefault(site.index, []).append(site)
    was_training = student.training
    student.eval()
    bar = tqdm(total=sum(len(v) for v in stacks.values()), desc="refit", unit="block", disable=not progress)
    try:
        for stack, by_block in stacks.items():
            _refit_stack(student, teacher, stack, by_block, batches, ridge, report, bar)
    finally:
        bar.close()
        student.train(was_training)
    report.seconds = time.perf_counter() - start
    return report


def _refit_stack(
    student: nn.Module,
    teacher: nn.Module,
    stack: str,
    by_block: dict[int, list[_Site]],
    batches: list[dict],
    ridge: float,
    report: RefitReport,
    bar: Any,
) -> None:
    """Refit the blocks of one ``ModuleList`` in turn, on cached hidden states of the original and of the twin."""
    t_blocks, s_blocks = teacher.get_submodule(stack), student.get_submodule(stack)
    t_cache, s_cache = _capture(teacher, t_blocks, batches), _capture(student, s_blocks, batches)
    t_hidden = [hidden for hidden, _ in t_cache]
    s_hidden = [hidden for hidden, _ in s_cache]
    last = max(by_block)
    with torch.no_grad():
        for index in range(last + 1):
            layer_start = time.perf_counter()
            sites = by_block.get(index, [])
            stats = {s.projection: _Stats(student.get_submodule(s.projection)) for s in sites}
            targets: dict[str, torch.Tensor] = {}
            inputs: dict[str, torch.Tensor] = {}
            hooks = [teacher.get_submodule(s.projection).register_forward_hook(_keep(targets, s.projection, output=True)) for s in sites]  # fmt: skip
            hooks += [student.get_submodule(s.projection).register_forward_hook(_keep(inputs, s.projection)) for s in sites]  # fmt: skip
            try:
                for number, batch in enumerate(batches):
                    t_hidden[number] = _run_block(t_blocks[index], t_hidden[number], t_cache[number][1][index])
                    s_out = _run_block(s_blocks[index], s_hidden[number], s_cache[number][1][index])
                    for name, st in stats.items():
                        st.add(inputs[name], targets[name], _row_mask(batch, inputs[name].shape[:-1]))
                    if not sites:
                        s_hidden[number] = s_out
            finally:
                for hook in hooks:
                    hook.remove()
            for site in sites:
                st = stats[site.projection]
                theta, before, after = st.solve(ridge, site.projection)
                st.assign(theta)
                seconds = time.perf_counter() - layer_start
                report.layers.append(RefitLayer(site.projection, site.activation, st.tokens, seconds, before, after))
                logger.info(
                    "refit %s: %d tokens, relative error %.4g → %.4g, %.2f s", site.projection, st.tokens, before, after,
                    seconds,
                )  # fmt: skip
            if sites:
                for number in range(len(batches)):
                    s_hidden[number] = _run_block(s_blocks[index], s_hidden[number], s_cache[number][1][index])
                bar.update(1)
