"""relufy over many devices with FSDP2: the teacher sharded like the student, and the twin gathered back whole.

Under ``accelerate launch`` with an FSDP2 config (``recipes/configs/fsdp2_*.yaml``) the Trainer shards the
student; :class:`~hf_lambda_gelu.relufy.RelufyTrainer` then shards the frozen teacher the same way
(:func:`shard_blocks`: ``fully_shard`` on each block, then on the root), so each of N ranks holds about 1/N of it
instead of a full replica. After training, :func:`gather_twin` gathers the full weights on every rank into a plain,
unsharded model, so every rank runs the same checks on the same twin and rank 0 saves it.

Under DDP nothing here applies: the teacher is replicated (it is not trained, so DDP never sees it).
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

__all__ = ["block_classes", "gather_twin", "is_sharded", "local_parameter_count", "shard_blocks"]


def block_classes(model: nn.Module, names: Iterable[str] | None = None) -> tuple[type, ...]:
    """The module classes of ``model`` that FSDP2 wraps one by one: those named in ``names`` (the FSDP plugin's
    ``transformer_cls_names_to_wrap``), by default the model's ``_no_split_modules`` (``BertLayer``, ``GPT2Block``).

    >>> from transformers import BertConfig, BertModel
    >>> [c.__name__ for c in block_classes(BertModel(BertConfig(hidden_size=8, num_hidden_layers=1,
    ...     num_attention_heads=2, intermediate_size=8)), ["BertLayer"])]
    ['BertLayer']
    """
    wanted = set(names or getattr(model, "_no_split_modules", None) or ())
    return tuple(sorted({type(m) for m in model.modules() if type(m).__name__ in wanted}, key=lambda c: c.__name__))


def shard_blocks(model: nn.Module, names: Iterable[str] | None = None, **fully_shard_kwargs) -> int:
    """Shard ``model`` with FSDP2 as accelerate shards the student: ``fully_shard`` on every block, then the root.

    Needs an initialized process group. A frozen teacher is sharded the same way; its blocks all-gather their
    weights for their forward and free them after it.

    Args:
        model: the model to shard in place (already on its device).
        names: class names of the blocks (default: :func:`block_classes`' default).
        **fully_shard_kwargs: passed to ``torch.distributed.fsdp.fully_shard`` (``mesh``, ``mp_policy``, ...).

    Returns:
        How many blocks were sharded.

    >>> shard_blocks(teacher)  # doctest: +SKIP
    12
    """
    from torch.distributed.fsdp import fully_shard

    classes = block_classes(model, names)
    blocks = [m for m in model.modules() if isinstance(m, classes)] if classes else []
    for block in blocks:
        fully_shard(block, **fully_shard_kwargs)
    fully_shard(model, **fully_shard_kwargs)
    return len(blocks)


def is_sharded(model: nn.Module) -> bool:
    """Whether FSDP2 has sharded ``model`` (``fully_shard`` was applied to it).

    >>> is_sharded(nn.Linear(2, 2))
    False
    """
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def local_parameter_count(model: nn.Module) -> int:
    """Parameter elements this rank holds: a sharded parameter counts its local shard only.

    >>> local_parameter_count(nn.Linear(2, 3))
    9
    """
    from torch.distributed.tensor import DTensor

    return sum((p.to_local() if isinstance(p, DTensor) else p).numel() for p in model.parameters())


def _plain_class(model: nn.Module) -> type:
    """The model's own class (``fully_shard`` swaps it for a subclass named ``FSDP<class>``)."""
    from torch.distributed.fsdp import FSDPModule

    return next(c for c in type(model).__mro__[1:] if not issubclass(c, FSDPModule))


def gather_twin(model: nn.Module) -> nn.Module:
    """A plain copy of an FSDP2-sharded transformers model, on the CPU, with its full weights, on every rank.

    A collective: every rank must call it. The copy is built on the meta device from the model's config (no
    initialization), takes the gathered state dict and the model's buffers, and re-ties tied weights.

    Args:
        model: a ``PreTrainedModel`` sharded with ``fully_shard``.

    >>> twin = gather_twin(trainer.model)  # doctest: +SKIP
    """
    import torch
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    with torch.device("meta"):
        plain = _plain_class(model)._from_config(model.config)
    plain.load_state_dict({k: v.detach().cpu() for k, v in state.items()}, strict=False, assign=True)
    for name, buffer in model.named_buffers():  # non-persistent ones (position ids) are not in the state dict
        owner, _, leaf = name.rpartition(".")
        module = plain.get_submodule(owner)
        module.register_buffer(leaf, buffer.detach().cpu(), persistent=leaf not in module._non_persistent_buffers_set)
    plain.tie_weights()
    meta = [name for name, p in plain.named_parameters() if p.is_meta]
    if meta:
        raise RuntimeError(f"gathering the sharded twin left parameters without values: {meta[:5]}")
    for source, target in zip(model.modules(), plain.modules()):
        target.training = source.training
        if isinstance(source, nn.Dropout):
            target.p = source.p
    return plain
