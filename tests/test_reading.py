"""The notebooks as their readers read them: Chinese first, short, one template (GUIDE §4).

Checked on the committed notebooks, no kernel needed:

* at most ``MAX_VISIBLE_CODE_LINES`` code lines a reader sees (a cell hidden from the reader
  carries a ``hide-input`` or ``remove-input`` tag for the site and ``source_hidden`` for
  Jupyter, and still runs under nbval);
* prose Chinese first: outside the English blocks every paragraph has at least as many Chinese
  characters as English words (a Chinese sentence with a few English terms passes, an English
  paragraph does not) and every heading carries Chinese;
* every prose cell with Chinese sentences has its English in the same cell, in
  ``<details><summary>English</summary>``, and the two hold the same numbers;
* no term that docs/glossary.md rules out;
* the chapter template's sections, in order (the setup notebook 00 has no article section).
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
GLOSSARY = ROOT / "docs" / "glossary.md"
MAX_VISIBLE_CODE_LINES = 200
HIDING_TAGS = {"hide-input", "remove-input", "remove-cell"}
# A cell's Chinese must be more than a heading or a caption to need an English block
MIN_CJK_FOR_ENGLISH_BLOCK = 20
# The chapter template (GUIDE §4), as heading prefixes in the order they appear
TEMPLATE = ("文章怎么说", "我们怎么做", "文章与实测", "小结", "练习")
NOT_CHAPTERS = {"00_setup.ipynb"}

CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
NUMBER = re.compile(r"(?<![\w.])[-−+]?\d[\d,]*(?:\.\d+)?")
ENGLISH_SUMMARY = re.compile(r"<details>\s*<summary>\s*English\s*</summary>", re.I)
DETAILS_TAG = re.compile(r"<details>|</details>", re.I)


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _hidden(cell: dict) -> bool:
    metadata = cell.get("metadata", {})
    tags = set(metadata.get("tags", []))
    return bool(tags & HIDING_TAGS) and metadata.get("jupyter", {}).get("source_hidden", False)


def _prose_cells(path: Path) -> list[tuple[int, str]]:
    return [
        (i, _source(c))
        for i, c in enumerate(_cells(path))
        if c["cell_type"] == "markdown"
        and "navigation" not in c.get("metadata", {}).get("tags", [])
    ]


def split_english(text: str) -> tuple[str, str]:
    """The cell's text outside its ``<details><summary>English</summary>`` blocks, and inside.

    Blocks nest (an exercise's answer is a ``<details>`` of its own), so each English block
    ends at the ``</details>`` that balances its opening tag.
    """
    outside, inside, position = [], [], 0
    for start in ENGLISH_SUMMARY.finditer(text):
        if start.start() < position:
            continue  # an English block inside an English block
        outside.append(text[position : start.start()])
        depth, end = 0, len(text)
        for tag in DETAILS_TAG.finditer(text, start.start()):
            depth += 1 if tag.group().lower() == "<details>" else -1
            if depth == 0:
                end = tag.end()
                break
        inside.append(text[start.end() : end])
        position = end
    outside.append(text[position:])
    return "".join(outside), "".join(inside)


def _plain(text: str) -> str:
    """Text without code, link targets, HTML tags and formulas: what is read as words."""
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"\$[^$]*\$", " ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    text = re.sub(r"https?://\S+", " ", text)
    return re.sub(r"<[^>]+>", " ", text)


def numbers(text: str) -> set[str]:
    """The numbers a text states, written one way (3,600 = 3600; −0.5 = -0.5)."""
    text = re.sub(r"\]\([^)]*\)", "]", text)  # file names in links are not statements
    text = re.sub(r"https?://\S+", " ", text)
    found = set()
    for match in NUMBER.finditer(text):
        number = match.group().replace("−", "-").lstrip("+").replace(",", "")
        found.add(number.rstrip("."))
    return found


def _paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


def banned_terms() -> dict[str, str]:
    """docs/glossary.md's table of terms not to use: each one and the term to use instead."""
    text = GLOSSARY.read_text(encoding="utf-8")
    section = text.split("## 不用的说法", 1)[1]
    rows = re.findall(r"^\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|", section, flags=re.M)
    return {bad: good for bad, good in rows[2:]}  # after the header and its rule


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.stem)
def notebook(request) -> Path:
    return request.param


def test_a_reader_sees_at_most_200_lines_of_code(notebook):
    visible = sum(
        sum(1 for line in _source(c).splitlines() if line.strip())
        for c in _cells(notebook)
        if c["cell_type"] == "code" and not _hidden(c)
    )
    assert visible <= MAX_VISIBLE_CODE_LINES, f"{notebook.name}: {visible} visible code lines"


def test_prose_is_chinese_first(notebook):
    problems = []
    for i, text in _prose_cells(notebook):
        chinese, _ = split_english(text)
        for paragraph in _paragraphs(_plain(chinese)):
            cjk = len(CJK.findall(paragraph))
            words = len(LATIN_WORD.findall(paragraph))
            heading = paragraph.lstrip().startswith("#")
            if (heading and cjk == 0) or (not heading and words > cjk):
                problems.append(f"cell {i}: {paragraph.strip()[:80]!r}")
    assert not problems, f"{notebook.name}: English outside an English block:\n" + "\n".join(
        problems
    )


def test_every_chinese_cell_has_its_english_with_the_same_numbers(notebook):
    problems = []
    for i, text in _prose_cells(notebook):
        chinese, english = split_english(text)
        body = "\n".join(line for line in chinese.splitlines() if not line.startswith("#"))
        if len(CJK.findall(_plain(body))) < MIN_CJK_FOR_ENGLISH_BLOCK:
            continue
        if not english.strip():
            problems.append(f"cell {i}: no <details><summary>English</summary> block")
            continue
        only_chinese = numbers(body) - numbers(english)  # headings are bilingual themselves
        only_english = numbers(english) - numbers(body)
        if only_chinese or only_english:
            problems.append(
                f"cell {i}: only in Chinese {sorted(only_chinese)}, "
                f"only in English {sorted(only_english)}"
            )
    assert not problems, f"{notebook.name}:\n" + "\n".join(problems)


def test_no_term_the_glossary_rules_out(notebook):
    banned = banned_terms()
    found = [
        f"cell {i}: {bad!r} (use {good!r})"
        for i, text in _prose_cells(notebook)
        for bad, good in banned.items()
        if bad in text
    ]
    assert not found, f"{notebook.name}:\n" + "\n".join(found)


@pytest.fixture
def chapter(notebook) -> Path:
    """A notebook that is a chapter of the article (the template's checks apply)."""
    if notebook.name in NOT_CHAPTERS:
        pytest.skip("the setup notebook is not a chapter of the article")
    return notebook


def _section(notebook: Path, heading: str) -> tuple[str, str]:
    """The Chinese and the English of the first cell with the ``## heading`` section."""
    cells = [t for _, t in _prose_cells(notebook) if re.search(rf"^## {heading}", t, re.M)]
    assert cells, f"{notebook.name}: no {heading}"
    return split_english(cells[0])


def test_each_chapter_follows_the_template(chapter):
    headings = [
        line.lstrip("#").strip()
        for _, text in _prose_cells(chapter)
        for line in split_english(text)[0].splitlines()
        if re.match(r"#{1,3} ", line)
    ]
    positions = []
    for section in TEMPLATE:
        matching = [n for n, heading in enumerate(headings) if heading.startswith(section)]
        assert matching, f"{chapter.name}: no heading starting with {section!r}"
        positions.append(matching[0])
    assert positions == sorted(positions), f"{chapter.name}: sections out of order {TEMPLATE}"
    cells = _cells(chapter)
    assert "navigation" in cells[-1].get("metadata", {}).get("tags", []), "navigation last"


def test_the_summary_ends_with_what_to_do(chapter):
    chinese, english = _section(chapter, "小结")
    assert "**怎么做：**" in chinese and "**What to do:**" in english, (
        f"{chapter.name}: the 小结 needs a one-line **怎么做：** and its **What to do:**"
    )


def test_the_exercises_hide_their_answers(chapter):
    chinese, _ = _section(chapter, "练习")
    assert "<details>" in chinese, f"{chapter.name}: the exercises' answers are not collapsed"


# The checks themselves, on small texts


def test_split_english_keeps_nested_answers_with_their_language():
    text = (
        "中文 1\n<details><summary>答案</summary>0.5</details>\n"
        "<details><summary>English</summary>English 1\n"
        "<details><summary>Answer</summary>0.5</details>\n</details>\n尾 2"
    )
    chinese, english = split_english(text)
    assert "答案" in chinese and "尾 2" in chinese and "English 1" not in chinese
    assert "Answer" in english and "0.5" in english and "尾" not in english


def test_numbers_are_compared_written_one_way():
    assert numbers("3,600 张图，−0.5，[链接](03_3_momentum.ipynb)") == {"3600", "-0.5"}
    assert numbers("accuracy 0.86 (3,600 photos).") == {"0.86", "3600"}


def test_an_english_paragraph_fails_and_chinese_with_terms_passes(tmp_path):
    def notebook_with(text):
        path = tmp_path / "x.ipynb"
        cell = {"cell_type": "markdown", "metadata": {}, "source": [text]}
        path.write_text(json.dumps({"cells": [cell]}))
        return path

    test_prose_is_chinese_first(
        notebook_with("用 MobileNetV2 在 ImageNet 上预训练的特征训练分类头。")
    )
    with pytest.raises(AssertionError, match="English outside"):
        test_prose_is_chinese_first(notebook_with("This paragraph is English, not Chinese."))
    with pytest.raises(AssertionError, match=r"only in Chinese \['0.86'\]"):
        test_every_chinese_cell_has_its_english_with_the_same_numbers(
            notebook_with(
                "准确率是 0.86，比特征提取高出一些，这是三个种子的平均值。"
                "<details><summary>English</summary>Accuracy is 0.85.</details>"
            )
        )


def test_the_chinese_readme_is_not_hard_wrapped():
    """A line break inside a Chinese paragraph becomes a stray space on the site."""
    lines = (ROOT / "README.zh.md").read_text(encoding="utf-8").splitlines()
    wrapped = [
        n + 1
        for n, (line, following) in enumerate(zip(lines, lines[1:], strict=False))
        if not line.startswith(("    ", "|"))
        and re.search(r"[\u3000-\u9fff\uff00-\uffef]$", line)
        and re.match(r"[\u3000-\u9fff\uff00-\uffef]", following)
    ]
    assert not wrapped, f"README.zh.md lines {wrapped} break a Chinese paragraph"
