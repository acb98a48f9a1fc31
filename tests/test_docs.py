"""The documentation holds together: README.md is a landing page, every relative link and anchor of README.md
and docs/*.md resolves (GitHub's heading slugs), and docs/configuration.md lists exactly the variables that
`segment_pipeline.settings.VARIABLES` declares. No servers: plain file reading.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from segment_pipeline.accounts import AccountSettings, SegmentFilter
from segment_pipeline.settings import VARIABLES

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 200
# names of mechanisms the code no longer has: a page naming one describes something that is not there
RETIRED = ("segment_growth_job", "series_pending", "built_from", "job execute", "backfill_logs", "--parallel")

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def prose(text: str) -> str:
    """The text outside fenced code blocks and code spans, where links are links."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text lower-cased, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a page, numbered as GitHub numbers repeated headings (-1, -2, ...)."""
    seen: dict[str, int] = {}
    found = set()
    for heading in _HEADING.findall(_FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(page: Path) -> list[str]:
    """Each relative link of `page` whose file does not exist or whose `#anchor` is no heading of its target."""
    problems = []
    for target in _LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # http(s), mailto: not ours to check offline
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists():
            problems.append(f"{page.name}: {target}: {linked} does not exist")
        elif anchor and (linked.suffix != ".md" or anchor not in anchors(linked)):
            problems.append(f"{page.name}: {target}: no heading '#{anchor}' in {linked.name}")
    return problems


def table_rows(text: str, first_header: str) -> list[list[str]]:
    """The body rows (cells stripped) of the Markdown table whose header row starts with `first_header`."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_header:
            rows = []
            for row in lines[index + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append([cell.strip() for cell in row.strip().strip("|").split("|")])
            return rows
    raise AssertionError(f"no table whose header starts with {first_header!r}")


def test_the_pages_are_there():
    names = {page.name for page in PAGES}
    expected = {"operating.md", "configuration.md", "for-sql-analysts.md", "troubleshooting.md", "architecture.md"}
    assert expected | {"development.md", "README.md"} <= names


def test_the_readme_is_a_landing_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move the detail into docs/"
    # it leads to every page of docs/
    for page in PAGES[1:]:
        assert f"(docs/{page.name})" in "\n".join(lines), f"README.md does not link docs/{page.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_and_anchor_resolves(page):
    assert broken_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_no_page_names_a_mechanism_the_code_no_longer_has(page):
    text = page.read_text(encoding="utf-8")
    assert [name for name in RETIRED if name in text] == []


def test_the_configuration_page_lists_exactly_the_variables_the_settings_read():
    rows = table_rows((REPO / "docs" / "configuration.md").read_text(encoding="utf-8"), "variable")
    documented = [row[0].strip("`") for row in rows]
    assert documented == [variable.name for variable in VARIABLES]


def test_the_configuration_page_lists_every_field_of_the_accounts_file():
    rows = table_rows((REPO / "docs" / "configuration.md").read_text(encoding="utf-8"), "field")
    documented = {row[0].strip("`") for row in rows}
    expected = {*AccountSettings.model_fields, *(f"segments.{name}" for name in SegmentFilter.model_fields)}
    assert documented == expected


def test_the_checker_finds_a_broken_file_a_broken_anchor_and_ignores_code(tmp_path):
    (tmp_path / "other.md").write_text("# The `Other` page: a/b\n\n## Same\n\n## Same\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#the-other-page-ab) [dup](other.md#same-1) [self](#a-heading)\n"
        "[gone](missing.md) [bad anchor](other.md#nowhere) [web](https://example.com/x#y)\n"
        "`[in code](missing-too.md)`\n```\n[fenced](missing-three.md)\n```\n# A heading\n",
        encoding="utf-8",
    )
    assert broken_links(page) == [
        f"page.md: missing.md: {tmp_path / 'missing.md'} does not exist",
        "page.md: other.md#nowhere: no heading '#nowhere' in other.md",
    ]
