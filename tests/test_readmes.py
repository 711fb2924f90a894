"""README.md and README.ja.md keep the same sections: every `##` section of each carries an explicit
`<!-- section: id -->` anchor on the line above its heading, and both files have the same anchors in
the same order. Headings are translated, so they cannot be compared; the anchors can. A section's
`###` sub-sections may differ (the Japanese one may be shorter and point to the English details), but
no section of one is missing from the other."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ANCHOR = re.compile(r"<!-- section: ([a-z0-9-]+) -->")


def sections(text: str) -> list[str]:
    """The anchors of the `##` headings, in order; raises naming a heading without one, or an anchor
    that stands above no `##` heading. Fenced code is skipped (its `#` lines are comments)."""
    anchors: list[str] = []
    fenced = False
    previous = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("```"):
            fenced = not fenced
        if fenced:
            previous = line
            continue
        anchor = ANCHOR.fullmatch(previous.strip())
        if line.startswith("## "):
            if anchor is None:
                raise AssertionError(f"line {number}: {line!r} has no <!-- section: id --> on the line above")
            anchors.append(anchor.group(1))
        elif anchor is not None:
            raise AssertionError(f"line {number - 1}: anchor {anchor.group(1)!r} stands above no ## heading")
        previous = line
    return anchors


def test_both_readmes_have_the_same_sections_in_the_same_order() -> None:
    english = sections((ROOT / "README.md").read_text(encoding="utf-8"))
    japanese = sections((ROOT / "README.ja.md").read_text(encoding="utf-8"))
    assert len(set(english)) == len(english), "an anchor is used twice in README.md"
    assert not set(english) - set(japanese), f"README.ja.md lacks {sorted(set(english) - set(japanese))}"
    assert not set(japanese) - set(english), f"README.md lacks {sorted(set(japanese) - set(english))}"
    assert japanese == english, "the sections are in another order"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# T\n\n## Quick start\n", "has no <!-- section: id -->"),
        ("<!-- section: a -->\ntext\n\n## A\n", "stands above no ## heading"),
    ],
)
def test_a_heading_without_an_anchor_or_a_stray_anchor_is_named(text: str, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        sections(text)


def test_code_fences_and_sub_sections_are_not_sections() -> None:
    text = (
        "<!-- section: a -->\n## A\n### detail\n```bash\n## not a heading\n```\n<!-- section: b -->\n## B\n"
    )
    assert sections(text) == ["a", "b"]
