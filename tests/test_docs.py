"""The docs are checked like code: README.md and docs/ run, the site builds strictly and renders in Chromium,
the CLI's flags and the docs agree, every public name is in the API reference, every ``--help`` shows defaults."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from helpers import offline_env, wordpiece_tokenizer
from transformers import BertConfig, BertForSequenceClassification, DataCollatorWithPadding

import hf_lambda_gelu
from hf_lambda_gelu.cli import HelpFormatter, build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: The hand-written pages (the Benchmarks page is benchmarks/README.md, generated into the site).
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
#: Hub ids the examples name, run here on the tiny local model (nothing downloads).
HUB_STAND_INS = ("google-bert/bert-base-uncased",)
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"a an good bad film plot awful great fine movie".split()]
FENCE = re.compile(r"(?P<before>[^\n]*)\n```(?P<lang>[\w-]*)\n(?P<code>.*?)\n```", re.S)
NOT_RUN = re.compile(r"<!-- not run: (?P<reason>[^>]+?) -->")


def python_blocks(page: Path) -> list[tuple[int, str, str | None]]:
    """(line, code, reason not run or None) of every ```python block of ``page``."""
    text = "\n" + page.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        if match["lang"] != "python":
            continue
        reason = NOT_RUN.search(match["before"])
        line = text.count("\n", 0, match.start("code"))
        blocks.append((line, match["code"], reason["reason"].strip() if reason else None))
    return blocks


def _tiny_world(folder: Path) -> dict:
    """The namespace the examples start with, and ``my-gelu-model/`` + ``unlabeled.txt`` in ``folder``."""
    tok = wordpiece_tokenizer(WORDS)
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        vocab_size=len(WORDS), num_labels=2, initializer_range=0.2)  # fmt: skip
    model = BertForSequenceClassification(config)
    model.save_pretrained(folder / "my-gelu-model")
    tok.save_pretrained(folder / "my-gelu-model")
    generator = torch.Generator().manual_seed(0)
    words = WORDS[5:]
    texts = [" ".join(words[i] for i in torch.randint(len(words), (5,), generator=generator)) for _ in range(40)]
    (folder / "unlabeled.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    labels = [int("good" in t or "great" in t) for t in texts]
    data = Dataset.from_dict({**tok(texts, truncation=True, max_length=16), "labels": labels})
    return {"model": model, "tok": tok, "train": data.select(range(32)), "val": data.select(range(32, 40)),
            "collator": DataCollatorWithPadding(tok)}  # fmt: skip


def test_every_python_block_either_runs_here_or_says_why_not():
    blocks = {page.relative_to(ROOT): python_blocks(page) for page in PAGES}
    assert sum(len(b) for b in blocks.values()) >= 12, blocks.keys()
    for page, page_blocks in blocks.items():
        for line, _code, reason in page_blocks:
            assert reason is None or len(reason) > 10, f"{page}:{line}: say why the block is not run"
    assert all(reason is None for _, _, reason in blocks[Path("README.md")])


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_of_the_page_run(page, tmp_path, monkeypatch):
    """The page's blocks run in order in one namespace, in a fresh folder, on tiny stand-ins (offline)."""
    monkeypatch.chdir(tmp_path)
    for name, value in offline_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    namespace = _tiny_world(tmp_path)
    for line, code, reason in python_blocks(page):
        if reason is not None:
            continue
        for hub_id in HUB_STAND_INS:
            code = code.replace(f'"{hub_id}"', '"my-gelu-model"')
        try:
            exec(compile(code, f"{page.name}:{line}", "exec"), namespace)
        except Exception as err:
            raise AssertionError(f"{page.relative_to(ROOT)}, the block at line {line} fails: {err!r}") from err


# ------------------------------------------------------------------------------------------- CLI flags


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for a in parser._actions for flag in a.option_strings if flag.startswith("--") and flag != "--help"}


def _docs_text() -> str:
    return "\n".join(page.read_text(encoding="utf-8") for page in PAGES)


#: --flags the docs give to other tools (pip, pytest, mkdocs) or the demo's own parser (--quick), and placeholders.
OTHER_TOOLS = {"--no-deps", "--doctest-modules", "--strict", "--quick", "--help", "--flag", "--name"}


def test_every_cli_flag_is_in_the_docs_and_every_documented_flag_exists():
    text = _docs_text()
    commands = _subcommands()
    every_flag = set().union(*map(_flags, commands.values()), {"--version", "--verbose"})
    undocumented = sorted(f"{name} {flag}" for name, p in commands.items() for flag in _flags(p) if flag not in text)
    # kebab-case flags anywhere in the docs (underscore flags belong to the recipes and the demo)
    mentioned = set(re.findall(r"(?<![\w-])--[a-z0-9]+(?:-[a-z0-9]+)+\b|(?<![\w-])--[a-z0-9]+\b", text))
    unknown = sorted(mentioned - every_flag - OTHER_TOOLS)
    # and on each `hf-lambda-gelu COMMAND ...` line, the flags of that command
    misplaced = sorted(
        f"{name} {flag}"
        for name, args in re.findall(r"hf-lambda-gelu (\w+)([^\n`]*)", text)
        if name in commands and name != "demo"  # the demo parses its own flags
        for flag in re.findall(r"(?<![\w-])--[a-z0-9-]+", args)
        if flag not in _flags(commands[name]) | {"--help"}
    )
    assert not (undocumented or unknown or misplaced), (
        f"CLI flags missing from README.md/docs: {undocumented}; flags the docs mention that no subcommand has: "
        f"{unknown}; flags given to a subcommand that lacks them: {misplaced}"
    )


def test_every_subcommand_help_shows_defaults_and_an_example():
    formatter = HelpFormatter("hf-lambda-gelu")
    for name, parser in _subcommands().items():
        help_text = parser.format_help()
        assert parser.formatter_class is HelpFormatter, name
        assert "example:\n  " in help_text and f"hf-lambda-gelu {name}" in help_text.split("example:")[1], name
        for action in parser._actions:
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS, "==SUPPRESS=="):
                shown = formatter._get_help_string(action) % {"default": action.default}
                assert "default" in shown.lower(), f"{name} {action.option_strings[0]}: {shown!r}"
    relufy_help = " ".join(_subcommands()["relufy"].format_help().split())
    assert "per 1,000 short texts" in relufy_help and "a GPU is much faster" in relufy_help
    assert "(default: 8)" in relufy_help  # the batch size, from RelufyArguments


def test_every_public_name_is_in_the_api_reference():
    api = (DOCS / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: hf_lambda_gelu\.(\w+)$", api, re.M))
    assert documented == set(hf_lambda_gelu.__all__), set(hf_lambda_gelu.__all__) ^ documented


# ------------------------------------------------------------------------------------ the site, rendered


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """The site, built once per session with ``mkdocs build --strict``."""
    pytest.importorskip("mkdocs", reason="the docs extra: pip install '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return out


#: Injected into a copy of a page: once loaded, the page's title becomes what rendered.
PROBE = """<script>window.addEventListener("load", () => { document.title = "PROBE" + JSON.stringify({
  tables: [...document.querySelectorAll("article table")].map(t => t.querySelectorAll("tr").length),
  images: [...document.querySelectorAll("article img")].map(i => [i.getAttribute("src"), i.naturalWidth])}); });
</script>"""


@pytest.mark.slow
def test_the_site_builds_and_the_relufy_guide_renders_its_tables_and_plot(site, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run does)")
    for page in ("index.html", "concepts/index.html", "api/index.html", "benchmarks/index.html", "cli/index.html"):
        assert (site / page).is_file(), page
    assert "RelufyArguments" in (site / "api/index.html").read_text(encoding="utf-8")
    guide = site / "guides" / "relufy"
    html = (guide / "index.html").read_text(encoding="utf-8")
    (guide / "probe.html").write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([chromium, *flags, "--virtual-time-budget=10000", "--dump-dom", (guide / "probe.html").as_uri()],
                         capture_output=True, text=True, timeout=120).stdout  # fmt: skip
    title = re.search(r"<title>PROBE(.*?)</title>", dom, re.S)
    assert title, f"the page did not finish loading in Chromium: {dom[:500]!r}"
    rendered = json.loads(title[1].replace("&quot;", '"').replace("&amp;", "&"))
    assert len(rendered["tables"]) >= 3 and min(rendered["tables"]) >= 4, rendered  # roads, budgets, report
    (plot,) = [width for src, width in rendered["images"] if src.endswith("relufy_budgets.png")]
    assert plot > 500, rendered  # the PNG loaded (naturalWidth 0 when it is missing)
    shot = tmp_path / "relufy.png"
    subprocess.run([chromium, *flags, "--window-size=1280,2400", f"--screenshot={shot}", (guide / "index.html").as_uri()],
                   capture_output=True, timeout=120, check=True)  # fmt: skip
    assert shot.stat().st_size > 50_000
