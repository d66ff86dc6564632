"""ONNX export of a ReLU release, with a graph audit and an ONNX Runtime parity check.

What a ReLU release buys at deployment is a graph without GELU: no ``Erf``, ``Gelu`` or ``FastGelu``
node. :func:`export_onnx` exports a model with ``torch.onnx.export(..., dynamo=True)`` and proves it:
it audits the op types (every ``nn.ReLU`` became a ``Relu`` node, no GELU is left, any other
activation is named with its module) and runs ONNX Runtime against PyTorch on a real batch.
:func:`export_release` does it for a release folder and adds the audit to the folder (JSON, model
card section, manifest). Exporter choice, inputs and the parity batch: docs/design.md.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.metadata
import inspect
import json
import logging
import os
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn
from transformers import AutoConfig, AutoProcessor

from ..config_fields import activation_fields
from ..errors import ExportAuditError, InvalidSettingError, MissingExtraError, ReluModelRequiredError
from ..gelu_kinds import GELU_KINDS, activation_kind
from .card import infer_pipeline_tag, set_card_section
from .folder import CARD_FILENAME, add_release_files

__all__ = [
    "AUDIT_FILENAME",
    "FORBIDDEN_OPS",
    "INT8_FILENAME",
    "ONNX_FILENAME",
    "SAMPLE_TEXTS",
    "check_relu_only",
    "deployment_markdown",
    "export_graph",
    "export_onnx",
    "export_release",
    "load_relu_model",
    "quantize_int8",
    "require_onnx",
]

logger = logging.getLogger(__name__)

ONNX_FILENAME = "model.onnx"
INT8_FILENAME = "model.int8.onnx"
AUDIT_FILENAME = "onnx_export_audit.json"
#: Ops that mean "GELU is still there": ONNX's Erf (GELU below opset 20) and Gelu, ONNX Runtime's fused forms.
FORBIDDEN_OPS = ("Erf", "Gelu", "FastGelu", "BiasGelu")
#: Element-wise activation ops the audit maps back to the model's modules.
ACTIVATION_OPS = frozenset(
    {"Relu", *FORBIDDEN_OPS, "Tanh", "Sigmoid", "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Elu", "Selu"}
    | {"Celu", "LeakyRelu", "PRelu", "ThresholdedRelu", "Mish"}
)
#: Sentences for the parity batch of text models (different lengths: the batch is padded).
SAMPLE_TEXTS = (
    "The film was a delight from start to finish.",
    "Terrible plot, wooden acting.",
    "def add(a, b):\n    return a + b",
    "ONNX Runtime runs this model without an Erf node.",
)
_AUDIT_FORMAT = "hf-lambda-gelu-onnx-audit"
_PROCESSOR_MARKERS = ("tokenizer_config.json", "tokenizer.json", "preprocessor_config.json", "processor_config.json")
_WRAPPED = "model."  # prefix of the model's modules inside the export wrappers


def require_onnx() -> None:
    """Raise :class:`~hf_lambda_gelu.errors.MissingExtraError` unless the ``onnx`` extra imports (before any work).

    >>> require_onnx()  # doctest: +SKIP
    """
    for package in ("onnx", "onnxscript", "onnxruntime"):
        try:
            importlib.import_module(package)
        except ImportError as err:
            raise MissingExtraError("ONNX export", package, "onnx") from err


def _gelu_modules(model: nn.Module) -> list[str]:
    return [
        f"{name} ({type(module).__name__})"
        for name, module in model.named_modules()
        if activation_kind(module) in GELU_KINDS
    ]


def check_relu_only(model: nn.Module | Any, action: str = "ONNX export", what: str | None = None) -> None:
    """Refuse a model (or config) that still has GELU or λ-GELU activations.

    Args:
        model: a model, or a config (its activation fields are read).
        action: what needs the ReLU model, for the message.
        what: how to name the model in the message (default: its class name).

    Raises:
        ReluModelRequiredError: GELU / λ-GELU modules or config values were found; the message names
            the command that makes the ReLU release.

    >>> from transformers import BertConfig
    >>> check_relu_only(BertConfig(hidden_act="relu"))
    >>> check_relu_only(BertConfig(hidden_act="gelu"))  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ReluModelRequiredError: BertConfig still has GELU / λ-GELU activations (hidden_act='gelu'); ...
    """
    config = getattr(model, "config", model)
    found = [f"{key}={value!r}" for key, value in activation_fields(config).items() if "gelu" in value.lower()]
    if isinstance(model, nn.Module):
        found += _gelu_modules(model)
    if found:
        raise ReluModelRequiredError(what or type(model).__name__, found, action)


def load_relu_model(source: str | os.PathLike, action: str = "ONNX export") -> tuple[nn.Module, Any]:
    """Load a ReLU checkpoint folder (a release) with its class from ``config.architectures``, and its processor.

    Args:
        source: a local checkpoint folder or a Hub model id.
        action: what the model is loaded for (named in the refusal message).

    Returns:
        ``(model in eval mode, tokenizer/processor or None)``.

    Raises:
        ReluModelRequiredError: the config still names a GELU / λ-GELU activation (checked before loading).

    >>> model, tokenizer = load_relu_model("my-release")  # doctest: +SKIP
    """
    config = AutoConfig.from_pretrained(source)
    check_relu_only(config, action, what=repr(str(source)))
    name = next(iter(getattr(config, "architectures", None) or []), None)
    model_class = getattr(transformers, name, None) if name else None
    model = (model_class or transformers.AutoModel).from_pretrained(source).eval()
    folder = Path(source)
    has_processor = folder.is_dir() and any((folder / marker).is_file() for marker in _PROCESSOR_MARKERS)
    return model, AutoProcessor.from_pretrained(source) if has_processor else None


class _TextModel(nn.Module):
    def __init__(self, model: nn.Module, use_cache: bool | None) -> None:
        super().__init__()
        self.model = model
        self.extra = {} if use_cache is None else {"use_cache": use_cache}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return _main_output(self.model(input_ids=input_ids, attention_mask=attention_mask, **self.extra))


class _ImageModel(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return _main_output(self.model(pixel_values=pixel_values))


def _main_output(output: Any) -> torch.Tensor:
    logits = getattr(output, "logits", None)
    return logits if logits is not None else output.last_hidden_state


def _output_name(model: nn.Module, inputs: dict[str, torch.Tensor]) -> str:
    with torch.inference_mode():
        output = model(**inputs)
    return "logits" if getattr(output, "logits", None) is not None else "last_hidden_state"


def _wrap(model: nn.Module) -> nn.Module:
    """The model in eval mode with positional tensor inputs and one output (causal LMs without their KV cache)."""
    if getattr(model, "main_input_name", "input_ids") == "pixel_values":
        return _ImageModel(model).eval()
    takes_cache = "use_cache" in inspect.signature(model.forward).parameters
    return _TextModel(model, False if takes_cache else None).eval()


def _default_inputs(model: nn.Module, tokenizer: Any) -> tuple[dict[str, torch.Tensor], str]:
    """The parity batch (see the module docstring) and a description of it."""
    config = model.config
    generator = torch.Generator().manual_seed(0)
    if getattr(model, "main_input_name", "input_ids") == "pixel_values":
        size = config.image_size if isinstance(config.image_size, int) else tuple(config.image_size)[0]
        shape = (len(SAMPLE_TEXTS), getattr(config, "num_channels", 3), size, size)
        return {"pixel_values": torch.randn(shape, generator=generator)}, f"seeded random pixel values {list(shape)}"
    if tokenizer is not None and callable(tokenizer):
        if getattr(tokenizer, "pad_token", None) is None:
            tokenizer.pad_token = tokenizer.eos_token
        batch = tokenizer(list(SAMPLE_TEXTS), padding=True, return_tensors="pt")
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        return inputs, f"the release's tokenizer on {len(SAMPLE_TEXTS)} sample sentences (padded)"
    shape = (len(SAMPLE_TEXTS), 12)
    input_ids = torch.randint(0, config.vocab_size, shape, generator=generator)
    attention_mask = torch.ones(shape, dtype=torch.long)
    attention_mask[-1, -3:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}, "seeded random token ids (last row padded)"


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter logs and warns about optional packages (torchvision), optimizer probes and axis names."""
    names = ("torch.onnx", "onnxscript", "onnx_ir")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"# The axis name: .* will not be used")
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _scope(node: Any) -> str | None:
    """Qualified name of the model module a node was exported from (the dynamo exporter's name scopes)."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            scopes = ast.literal_eval(prop.value)
            module = scopes[-2] if len(scopes) >= 2 else ""
            return module.removeprefix(_WRAPPED) if module != _WRAPPED.rstrip(".") else ""
    return None


def _nodes(graph_proto: Any) -> Iterator[Any]:
    yield from graph_proto.graph.node
    for function in graph_proto.functions:
        yield from function.node


def _op_types(proto: Any) -> dict[str, int]:
    """Count per op type (graph and functions), most frequent first."""
    counts = Counter(node.op_type for node in _nodes(proto))
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


class _DropPreprocessingHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider to run pre-processing before quantization")


def quantize_int8(onnx_path: str | os.PathLike, int8_path: str | os.PathLike) -> dict[str, int]:
    """Dynamic int8 quantization with ONNX Runtime (int8 weights, activations quantized at run time).

    Args:
        onnx_path: the fp32 ONNX file.
        int8_path: the quantized file to write.

    Returns:
        The op-type counts of the quantized graph.

    >>> quantize_int8("onnx/model.onnx", "onnx/model.int8.onnx")["MatMulInteger"]  # doctest: +SKIP
    12
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    hint = _DropPreprocessingHint()
    logging.getLogger().addFilter(hint)
    try:
        quantize_dynamic(str(onnx_path), str(int8_path), weight_type=QuantType.QInt8)
    finally:
        logging.getLogger().removeFilter(hint)
    return _op_types(onnx.load(str(int8_path), load_external_data=False))


def _versions() -> dict[str, str]:
    names = ("torch", "transformers", "onnx", "onnxscript", "onnxruntime")
    return {name: importlib.metadata.version(name) for name in names}


def _run_onnx(path: Path, inputs: dict[str, torch.Tensor]) -> Any:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {name: tensor.numpy() for name, tensor in inputs.items()})[0]


def export_graph(
    model: nn.Module, path: str | os.PathLike, inputs: dict[str, torch.Tensor], *, opset: int | None = None
) -> str:
    """Export ``model`` to the ONNX file ``path`` as is: no activation check, no audit (see :func:`export_onnx`).

    For comparisons (the GELU reference of ``benchmarks/relu_payoff.py``); releases go through
    :func:`export_onnx`. Inputs are named after ``inputs``' keys, batch and sequence axes are dynamic.

    Args:
        model: a transformers model (text: ``input_ids`` + ``attention_mask``; vision: ``pixel_values``).
        path: the ``.onnx`` file to write.
        inputs: example inputs (at least 2 rows and 2 tokens, or the exporter fixes those sizes).
        opset: ONNX opset (default: the exporter's).

    Returns:
        The output's name: ``"logits"``, or ``"last_hidden_state"`` for a bare encoder.

    >>> export_graph(model, "gelu.onnx", {"input_ids": ids, "attention_mask": mask})  # doctest: +SKIP
    'logits'
    """
    output_name = _output_name(model, inputs)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    dynamic = {name: {0: batch} if name == "pixel_values" else {0: batch, 1: sequence} for name in inputs}
    with _quiet_exporter():
        program = torch.onnx.export(
            _wrap(model),
            tuple(inputs.values()),
            input_names=list(inputs),
            output_names=[output_name],
            dynamic_shapes=dynamic,
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
        program.save(str(path))
    return output_name


def export_onnx(
    model: nn.Module,
    output_dir: str | os.PathLike,
    *,
    inputs: dict[str, torch.Tensor] | None = None,
    tokenizer: Any = None,
    opset: int | None = None,
    atol: float = 1e-4,
    int8: bool = False,
) -> dict[str, Any]:
    """Export a ReLU model to ``output_dir/model.onnx``, audit the graph, check ONNX Runtime parity.

    Writes ``output_dir/onnx_export_audit.json`` (also when the audit fails) and returns the audit:
    ``op_types`` (count per op type), ``forbidden_ops_found``, ``mlp_activations`` (each ``nn.ReLU``
    module → the op types it exported to; ``["Relu"]`` expected), ``other_activations`` (activation
    nodes of other modules, e.g. BERT's pooler ``Tanh``), ``parity`` and ``passed``.

    Args:
        model: a ReLU transformers model (text: ``input_ids``; vision: ``pixel_values``).
        output_dir: folder for the ONNX file and the audit (created).
        inputs: the parity batch (default: see the module docstring; at least 2 rows and 2 tokens, or
            the exporter fixes the batch / sequence size).
        tokenizer: used for the default text batch.
        opset: ONNX opset (default: the exporter's, 20; ≥ 18).
        atol: largest allowed max |Δ| between ONNX Runtime and PyTorch outputs.
        int8: also write ``model.int8.onnx`` (:func:`quantize_int8`), audit its ops and report (not
            check) its difference to PyTorch on the parity batch: max |Δ| and argmax agreement.

    Raises:
        MissingExtraError: the ``onnx`` extra is not installed (checked first).
        ReluModelRequiredError: the model still has GELU / λ-GELU (nothing is exported).
        InvalidSettingError: ``opset`` below 18 or ``atol`` not positive.
        ExportAuditError: a GELU op is in the graph, an ``nn.ReLU`` did not export to ``Relu``, or the
            outputs differ by more than ``atol``.

    >>> from transformers import BertConfig, BertForSequenceClassification
    >>> cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
    ...                  hidden_act="relu")
    >>> audit = export_onnx(BertForSequenceClassification(cfg), "onnx")  # doctest: +SKIP
    >>> audit["passed"], audit["other_activations"]  # doctest: +SKIP
    (True, {'bert.pooler.activation': ['Tanh']})
    """
    require_onnx()
    import onnx

    check_relu_only(model)
    if opset is not None and opset < 18:
        raise InvalidSettingError("opset", opset, "use 18 or later (or None for the exporter's default).")
    if not atol > 0:
        raise InvalidSettingError("atol", atol, "the parity tolerance must be > 0 (default 1e-4).")
    model.eval()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / ONNX_FILENAME
    batch_text = "the caller's inputs"
    if inputs is None:
        inputs, batch_text = _default_inputs(model, tokenizer)
    wrapped = _wrap(model)
    output_name = export_graph(model, path, inputs, opset=opset)
    proto = onnx.load(str(path), load_external_data=False)
    nodes = list(_nodes(proto))
    op_types = _op_types(proto)
    by_module: dict[str, set[str]] = {}
    for node in nodes:
        if node.op_type in ACTIVATION_OPS:
            by_module.setdefault(_scope(node) or "<unknown>", set()).add(node.op_type)
    relu_modules = [name for name, module in model.named_modules() if isinstance(module, nn.ReLU)]
    mlp_activations = {name: sorted(by_module.get(name, ())) for name in relu_modules}
    other = {name: sorted(ops) for name, ops in by_module.items() if name not in mlp_activations}

    with torch.inference_mode():
        expected = [wrapped(*inputs.values()).numpy()]
        expected.append(wrapped(*(t[:1] for t in inputs.values())).numpy())
    got = [_run_onnx(path, inputs), _run_onnx(path, {k: t[:1] for k, t in inputs.items()})]
    max_abs_diff = max(float(abs(g - e).max()) for g, e in zip(got, expected))
    forbidden = {op: op_types[op] for op in FORBIDDEN_OPS if op in op_types}
    problems = [f"{count} {op} node(s) in the graph" for op, count in forbidden.items()]
    if not relu_modules:
        problems.append("the model has no nn.ReLU module")
    problems += [f"{name} exported as {ops or 'nothing'}" for name, ops in mlp_activations.items() if ops != ["Relu"]]
    if not max_abs_diff <= atol:
        problems.append(f"ONNX Runtime differs from PyTorch by {max_abs_diff:.3g} > {atol:g}")
    int8_audit = None
    if int8:
        int8_ops = quantize_int8(path, output_dir / INT8_FILENAME)
        int8_forbidden = {op: int8_ops[op] for op in FORBIDDEN_OPS if op in int8_ops}
        problems += [f"{count} {op} node(s) in the int8 graph" for op, count in int8_forbidden.items()]
        quantized = _run_onnx(output_dir / INT8_FILENAME, inputs)
        int8_audit = {
            "onnx_file": INT8_FILENAME,
            "quantization": "onnxruntime.quantization.quantize_dynamic(weight_type=QInt8)",
            "op_types": int8_ops,
            "forbidden_ops_found": int8_forbidden,
            "max_abs_diff_vs_pytorch": float(abs(quantized - expected[0]).max()),
            "argmax_agreement": float((quantized.argmax(-1) == expected[0].argmax(-1)).mean()),
        }
    audit = {
        "format": _AUDIT_FORMAT,
        "onnx_file": ONNX_FILENAME,
        "model_class": type(model).__name__,
        "task": infer_pipeline_tag(model),
        "exporter": "torch.onnx.export(dynamo=True)",
        "opset": next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
        "requested_opset": opset,
        "versions": _versions(),
        "inputs": {name: list(tensor.shape) for name, tensor in inputs.items()},
        "output": output_name,
        "dynamic_axes": {name: ["batch"] if name == "pixel_values" else ["batch", "sequence"] for name in inputs},
        "nodes": len(nodes),
        "op_types": op_types,
        "forbidden_ops": list(FORBIDDEN_OPS),
        "forbidden_ops_found": forbidden,
        "mlp_activations": mlp_activations,
        "other_activations": other,
        "parity": {
            "batch": batch_text,
            "shapes": [list(expected[0].shape), list(expected[1].shape)],
            "max_abs_diff": max_abs_diff,
            "atol": atol,
            "passed": max_abs_diff <= atol,
        },
        "int8": int8_audit,
        "problems": problems,
        "passed": not problems,
    }
    audit_path = output_dir / AUDIT_FILENAME
    audit_path.write_text(json.dumps(audit, indent=2) + "\n", encoding="utf-8")
    if problems:
        raise ExportAuditError(audit_path, problems)
    logger.info("Exported %s to %s (opset %s): audit passed.", type(model).__name__, path, audit["opset"])
    return audit


def deployment_markdown(audit: dict[str, Any]) -> str:
    """The model card's "ONNX export" section body for an audit from :func:`export_onnx`.

    >>> text = deployment_markdown({"opset": 20, "exporter": "torch.onnx.export(dynamo=True)",
    ...     "forbidden_ops": ["Erf"], "forbidden_ops_found": {}, "mlp_activations": {"a.act": ["Relu"]},
    ...     "other_activations": {}, "output": "logits", "op_types": {"Relu": 1},
    ...     "parity": {"max_abs_diff": 1e-7, "atol": 1e-4, "shapes": [[4, 2], [1, 2]], "batch": "b"}})
    >>> "| MLP activations exported as `Relu` | 1 of 1 |" in text
    True
    """
    mlp = audit["mlp_activations"]
    relu = sum(ops == ["Relu"] for ops in mlp.values())
    other = ", ".join(f"`{name}`: {'/'.join(ops)}" for name, ops in audit["other_activations"].items()) or "none"
    forbidden = ", ".join(f"{op} × {n}" for op, n in audit["forbidden_ops_found"].items()) or "none"
    parity = audit["parity"]
    ops = ", ".join(f"{op} {n}" for op, n in audit["op_types"].items())
    return "\n".join(
        [
            f"Exported to ONNX with `{audit['exporter']}` at opset {audit['opset']} by `hf-lambda-gelu export`; the "
            f"full audit is in `{AUDIT_FILENAME}`.",
            "",
            "| check | result |",
            "|---|---|",
            f"| {' / '.join(f'`{op}`' for op in audit['forbidden_ops'])} nodes | {forbidden} |",
            f"| MLP activations exported as `Relu` | {relu} of {len(mlp)} |",
            f"| other activation nodes (not MLP activations) | {other} |",
            f"| ONNX Runtime vs PyTorch, max \\|Δ {audit['output']}\\| | {parity['max_abs_diff']:.3g} "
            f"(tolerance {parity['atol']:g}; {parity['batch']}; shapes {parity['shapes']}) |",
            *_int8_rows(audit.get("int8"), audit["output"]),
            "",
            f"Op types: {ops}.",
        ]
    )


def _int8_rows(int8: dict[str, Any] | None, output: str) -> list[str]:
    if not int8:
        return []
    forbidden = ", ".join(f"{op} × {n}" for op, n in int8["forbidden_ops_found"].items()) or "none"
    return [
        f"| int8 (`{int8['onnx_file']}`, ONNX Runtime dynamic quantization) | GELU nodes: {forbidden}; "
        f"`Relu` × {int8['op_types'].get('Relu', 0)}; max \\|Δ {output}\\| vs PyTorch {int8['max_abs_diff_vs_pytorch']:.3g}, "
        f"argmax agreement {int8['argmax_agreement']:.0%} on the parity batch |"
    ]


def export_release(
    release_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    opset: int | None = None,
    atol: float = 1e-4,
    inputs: dict[str, torch.Tensor] | None = None,
    int8: bool = False,
    update_release: bool = True,
) -> dict[str, Any]:
    """Export a ReLU release folder to ONNX (:func:`export_onnx`) and add the audit to the release.

    With ``update_release``, the audit JSON is copied into the release folder, its model card
    (``README.md``, if any) gets an "ONNX export" subsection under "Deployment" (replaced on a
    re-export), and a release manifest lists the new file.

    Args:
        release_dir: the ReLU release (``hf-lambda-gelu reluize`` / ``save_release``), or any local
            ReLU checkpoint folder.
        output_dir: where ``model.onnx`` and the audit go.
        opset: ONNX opset (default: the exporter's).
        atol: parity tolerance (max |Δ| of the outputs).
        inputs: the parity batch (default: the release's tokenizer on :data:`SAMPLE_TEXTS`...).
        int8: also write and audit the dynamic int8 model (see :func:`export_onnx`).
        update_release: write the audit into the release folder and its card.

    Raises:
        MissingExtraError: the ``onnx`` extra is not installed (checked first).
        FileNotFoundError: ``release_dir`` is not a folder.
        ReluModelRequiredError: the checkpoint still has GELU / λ-GELU (message names the command that
            makes the release).
        ExportAuditError: see :func:`export_onnx`.

    >>> audit = export_release("bert-relu-release", "bert-relu-onnx")  # doctest: +SKIP
    >>> audit["forbidden_ops_found"]  # doctest: +SKIP
    {}
    """
    require_onnx()
    release = Path(release_dir)
    if not release.is_dir():
        raise FileNotFoundError(f"Release folder {str(release)!r} does not exist (or is not a folder).")
    model, processor = load_relu_model(release)
    tokenizer = getattr(processor, "tokenizer", processor)
    audit = export_onnx(model, output_dir, inputs=inputs, tokenizer=tokenizer, opset=opset, atol=atol, int8=int8)
    if update_release:
        (release / AUDIT_FILENAME).write_text(json.dumps(audit, indent=2) + "\n", encoding="utf-8")
        card = release / CARD_FILENAME
        names = [AUDIT_FILENAME]
        if card.is_file():
            text = set_card_section(card.read_text(encoding="utf-8"), "### ONNX export", deployment_markdown(audit))
            card.write_text(text, encoding="utf-8")
            names.append(CARD_FILENAME)
        add_release_files(release, names)
    return audit
