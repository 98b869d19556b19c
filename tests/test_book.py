"""The rendered book (``make book``): every page is there, every internal link resolves, and
the index renders in a real browser (headless Chromium, Debian's ``chromium`` package).

``make test-book`` builds the book and runs these tests; elsewhere (``make test``) they skip
unless ``build/book`` exists. The Chromium test skips when no Chromium is installed.
"""

import html.parser
import json
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.script_loader import load_script

ROOT = Path(__file__).resolve().parent.parent
BOOK = Path(os.environ.get("FTUTILS_BOOK_DIR", ROOT / "build" / "book"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

needs_book = pytest.mark.skipif(
    not (BOOK / "index.html").is_file(), reason=f"no built book in {BOOK}: run make test-book"
)


class Page(html.parser.HTMLParser):
    """The links (``href``/``src``) and the element ids of one HTML page."""

    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        for name in ("href", "src"):
            if attrs.get(name):
                self.links.append(attrs[name])


def _parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@needs_book
def test_search_finds_chinese_words_on_the_chapters():
    index = (BOOK / "searchindex.js").read_text(encoding="utf-8")
    terms = json.loads(index[index.index("(") + 1 : index.rindex(")")])["terms"]
    for word in ("微调", "迁移", "增强", "动量"):  # jieba splits 数据增强 as a query splits it
        assert word in terms, f"{word!r} is not in the search index"
    assert "fine" in terms  # English is indexed too


@needs_book
def test_every_notebook_and_reference_page_is_built():
    for notebook in NOTEBOOKS:
        assert (BOOK / "notebooks" / f"{notebook.stem}.html").is_file(), notebook.name
    for page in ("index", "README", "README.zh", "errata", "docs/glossary", "docs/traps"):
        assert (BOOK / f"{page}.html").is_file(), page


@needs_book
def test_every_internal_link_resolves_to_a_file_and_its_anchor():
    # the book's pages (``_static`` holds the theme's assets, some of them templates)
    pages = {p: _parse(p) for p in BOOK.rglob("*.html") if "_static" not in p.parts}
    broken = []
    for path, page in pages.items():
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "javascript:")):
                continue  # external: not this test's business
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if not target.exists():
                broken.append(f"{path.relative_to(BOOK)}: {link} (no such file)")
            elif parts.fragment and target in pages:
                if unquote(parts.fragment) not in pages[target].ids:
                    broken.append(f"{path.relative_to(BOOK)}: {link} (no such anchor)")
    assert not broken, "\n".join(broken)


@needs_book
def test_pages_link_to_the_previous_and_next_chapter():
    first, second = NOTEBOOKS[0].stem, NOTEBOOKS[1].stem
    links = _parse(BOOK / "notebooks" / f"{second}.html").links
    assert f"{first}.html" in links and f"{NOTEBOOKS[2].stem}.html" in links


def test_errata_gathers_each_notebooks_table_and_verdicts():
    build_book = load_script("build_book")
    page = build_book.errata(NOTEBOOKS)
    for notebook in NOTEBOOKS:
        content = json.loads(notebook.read_text(encoding="utf-8"))
        lines = build_book.verdicts(content)
        if build_book.comparison_table(content) is None and not lines:
            continue
        assert f"](notebooks/{notebook.name})" in page, notebook.name
        for line in lines:
            assert f"- {line}" in page, line
    tables = sum(build_book.comparison_table(json.loads(p.read_text())) is not None
                 for p in NOTEBOOKS)  # fmt: skip
    assert page.count('<div class="errata-table">') == tables >= len(NOTEBOOKS) - 1


def _chromium() -> str | None:
    """Debian's Chromium (or Ubuntu's name for it), if installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@needs_book
@pytest.mark.skipif(_chromium() is None, reason="no Chromium (Debian: apt install chromium)")
def test_the_index_renders_in_headless_chromium(tmp_path):
    browser = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
               f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    index = (BOOK / "index.html").resolve().as_uri()
    dom = subprocess.run(
        [*browser, "--virtual-time-budget=5000", "--dump-dom", index],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert "预训练图像分类器的微调" in dom  # the title, in Chinese too
    for notebook in NOTEBOOKS:  # the table of contents, rendered
        assert f"notebooks/{notebook.stem}.html" in dom, notebook.name
    shot = tmp_path / "index.png"
    subprocess.run([*browser, f"--screenshot={shot}", "--window-size=1280,900", index],
                   capture_output=True, timeout=120, check=True)  # fmt: skip
    assert shot.stat().st_size > 20_000  # a page was drawn, not a blank one
