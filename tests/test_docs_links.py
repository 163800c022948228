"""Every link in the repository's markdown resolves inside the repository, and nothing points at the
team-only method file (the method lives in docs/method.md).

Checked: inline links ``[text](target)`` and reference definitions ``[label]: target`` in README.md,
docs/*.md and the other markdown files of the repository (code blocks and inline code skipped).
A relative target must name an existing file or folder inside the repository; ``file.md#anchor``
and ``#anchor`` must match a heading's GitHub-style slug in that file. External links (http,
mailto) are not fetched.
"""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".venv", ".git", "analyses", "test-artifacts", ".cache", "node_modules", ".pytest_cache"}
TEAM_FILE = "REFERENCE" + ".md"  # spelled in two parts so that this file does not mention it
SCANNED_FOR_TEAM_FILE = ("README.md", "docs", "core", "components", "callbacks", "tests")

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"(`+).*?\1")
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def markdown_files() -> list[Path]:
    """The repository's markdown files, outside virtual environments and generated folders."""
    return sorted(p for p in ROOT.rglob("*.md") if not SKIP_DIRS & set(p.relative_to(ROOT).parts))


def _prose_lines(text: str):
    """``(line number, line)`` outside fenced code blocks, with inline code removed."""
    fenced = False
    for i, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield i, _INLINE_CODE.sub("", line)


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup stripped, lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)   # [text](url) -> text
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"(?<!\w)_+|_+(?!\w)", "", text)                # _emphasis_ markers, not snake_case
    text = text.strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """All heading anchors of a markdown file (repeated headings get -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    for _, line in _prose_lines_raw(path.read_text(encoding="utf-8")):
        m = _HEADING.match(line)
        if not m:
            continue
        slug = github_slug(m.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _prose_lines_raw(text: str):
    """Like :func:`_prose_lines` but keeps inline code (headings' slugs include its text)."""
    fenced = False
    for i, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield i, line


def links(path: Path) -> list[tuple[int, str]]:
    """``(line, target)`` of every inline link and reference definition of a markdown file."""
    found = []
    for i, line in _prose_lines(path.read_text(encoding="utf-8")):
        found += [(i, m.group(1)) for m in _INLINE_LINK.finditer(line)]
        m = _REF_DEF.match(line)
        if m:
            found.append((i, m.group(1)))
    return found


def broken_link(source: Path, target: str, *, root: Path = ROOT) -> str | None:
    """Why ``target`` (linked from ``source``) does not resolve inside ``root``, or None."""
    if _EXTERNAL.match(target):
        return None
    file_part, _, anchor = target.partition("#")
    if file_part.startswith("/"):
        return "absolute path (use a path relative to the file)"
    dest = (source.parent / file_part).resolve() if file_part else source
    if dest != root and root not in dest.parents:
        return "points outside the repository"
    if not dest.exists():
        return "no such file"
    if anchor:
        if dest.suffix.lower() != ".md" or dest.is_dir():
            return "anchor on a file that is not markdown"
        if anchor.lower() not in anchors(dest):
            return f"no heading with anchor #{anchor} in {dest.relative_to(root)}"
    return None


def test_github_slugs():
    assert github_slug("4b. Annotation — the calibrated method (default, `--method calibrated`)") == (
        "4b-annotation--the-calibrated-method-default---method-calibrated")
    assert github_slug("1a. SAE quality (`metrics.json` → `summary`)") == "1a-sae-quality-metricsjson--summary"
    assert github_slug("What `featurelens serve` does") == "what-featurelens-serve-does"
    assert github_slug("The [method](docs/method.md) in_brief") == "the-method-in_brief"


def test_checker_finds_broken_links(tmp_path):
    tmp_path = tmp_path.resolve()
    page = tmp_path / "page.md"
    page.write_text("# Top\n## Two words\n[a](page.md#two-words) [b](#top) [c](missing.md)\n"
                    "[d](page.md#nowhere) [e](../outside.md) [f](https://example.org/x)\n"
                    "```\n[g](in-code.md)\n```\n`[h](inline-code.md)`\n[ref]: gone.txt\n", encoding="utf-8")
    bad = {t: broken_link(page, t, root=tmp_path) for _, t in links(page)}
    assert set(bad) == {"page.md#two-words", "#top", "missing.md", "page.md#nowhere", "../outside.md",
                        "https://example.org/x", "gone.txt"}
    assert [t for t, why in bad.items() if why] == ["missing.md", "page.md#nowhere", "../outside.md", "gone.txt"]


def test_every_markdown_link_resolves_inside_the_repository():
    files = markdown_files()
    assert ROOT / "README.md" in files and ROOT / "docs" / "method.md" in files
    checked, broken = 0, []
    for path in files:
        for line, target in links(path):
            checked += 1
            why = broken_link(path, target)
            if why:
                broken.append(f"{path.relative_to(ROOT)}:{line}: ({target}) {why}")
    assert checked > 20, f"only {checked} links found: is the link pattern right?"
    assert not broken, "broken links:\n" + "\n".join(broken)


def _scanned_files():
    for name in SCANNED_FOR_TEAM_FILE:
        p = ROOT / name
        if p.is_file():
            yield p
        else:
            yield from (f for f in sorted(p.rglob("*")) if f.suffix in (".py", ".md") and "__pycache__" not in f.parts)


@pytest.mark.parametrize("needle", [TEAM_FILE, "/work/" + "shared", "shared/" + "DESIGN.md", "shared/" + "STYLE.md"])
def test_no_mention_of_team_only_files(needle):
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in _scanned_files()
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if needle.lower() in line.lower()]
    assert not hits, f"{needle} is not in the repository; point to docs/method.md instead: {hits}"


_SECTION_MENTION = re.compile(r"method\.md\S*\s*\(?§(\d+[a-z]?)(\.\d+)?")


def method_sections() -> set[str]:
    """Section numbers of docs/method.md: "1", "1a", "4b", ... from headings such as "## 4b. Annotation"."""
    text = (ROOT / "docs" / "method.md").read_text(encoding="utf-8")
    return {m.group(2) for m in re.finditer(r"^(#{2,3})\s+(\d+[a-z]?)\.\s", text, flags=re.M)}


def test_mentions_of_method_sections_exist():
    """``docs/method.md §N`` in code and docs names a section that exists (no "§4.3" for step 3 of §4)."""
    sections = method_sections()
    assert {"1", "1a", "4", "4b", "8"} <= sections, sections
    bad, seen = [], 0
    for p in [*markdown_files(), *(f for d in ("core", "components", "callbacks", "tests", "benchmarks")
                                   for f in sorted((ROOT / d).rglob("*.py")))]:
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            for m in _SECTION_MENTION.finditer(line):
                seen += 1
                if m.group(1) not in sections or m.group(2):
                    bad.append(f"{p.relative_to(ROOT)}:{i}: §{m.group(1)}{m.group(2) or ''}")
    assert seen > 10, seen
    assert not bad, f"sections not in docs/method.md (it has {sorted(sections)}): {bad}"


_FILE_MENTION = re.compile(r"\b(?:core|components|callbacks|benchmarks|scripts|tests)/[\w/]+\.py\b")
_MODULE_MENTION = re.compile(r"`(core(?:\.\w+)+)")


def test_code_paths_and_modules_in_docs_exist():
    """``core/x/y.py`` paths and ``core.x.y`` names in README and docs/ name code that exists (a module,
    or for ``core.name`` one of the notebook API's names), so the docs follow the code when it moves."""
    import core

    bad, seen = [], 0
    for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = p.read_text(encoding="utf-8")
        for m in _FILE_MENTION.finditer(text):
            seen += 1
            if not (ROOT / m.group(0)).is_file():
                bad.append(f"{p.relative_to(ROOT)}: {m.group(0)}")
        for m in _MODULE_MENTION.finditer(text):
            seen += 1
            parts = m.group(1).split(".")
            if len(parts) == 2 and parts[1] in core.__all__:
                continue
            if not any((ROOT.joinpath(*parts[:k]).with_suffix(".py")).is_file()
                       or (ROOT.joinpath(*parts[:k]) / "__init__.py").is_file() for k in range(2, len(parts) + 1)):
                bad.append(f"{p.relative_to(ROOT)}: {m.group(1)}")
    assert seen > 30, seen
    assert not bad, bad
