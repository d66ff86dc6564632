"""mkdocs hook: the Benchmarks page is benchmarks/README.md itself, generated into the site at build time (one
source for the numbers; nothing is copied into docs/)."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks" / "README.md"
NOTE = (
    "> This page is `benchmarks/README.md`. Its scripts and their JSON results are in `benchmarks/` and "
    "`benchmarks/results/` of the repository.\n\n"
)


def on_files(files, config):
    text = BENCHMARKS.read_text(encoding="utf-8")
    title, _, body = text.partition("\n")
    files.append(File.generated(config, "benchmarks.md", content=f"{title}\n\n{NOTE}{body}"))
    return files
