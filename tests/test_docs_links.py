"""Every relative link and every repository path named in README.md and docs/ exists.

Links are checked down to the heading anchor (GitHub's slug of the heading text); a path
in backticks counts when it starts with one of the repository's top folders and names no
pattern (`*`, `<...>`, `{a,b}`, `XX`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE_PATH = re.compile(r"`((?:alseg|scripts|conf|docs|tests|benchmarks|notebooks)/[^`\s]*)`")
PATTERN = re.compile(r"[*<>{}]|XX|\.\.\.")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, flags=re.M)}


def test_slug_follows_github():
    assert slug("C. Revisiting superpixels (Cai et al.)") == "c-revisiting-superpixels-cai-et-al"
    assert slug("Outputs: the run dir") == "outputs-the-run-dir"
    assert (
        slug("Debiasing by re-weighting (LWBC, JTT, LfF)")
        == "debiasing-by-re-weighting-lwbc-jtt-lff"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_and_anchors_exist(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(
                f"{target}: no file {dest.relative_to(ROOT) if ROOT in dest.parents else dest}"
            )
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_named_repository_paths_exist(page):
    missing = [
        p
        for p in CODE_PATH.findall(page.read_text())
        if not PATTERN.search(p) and not (ROOT / p.rstrip("/.,:;")).exists()
    ]
    assert not missing, f"{page.name} names paths that do not exist: {missing}"
