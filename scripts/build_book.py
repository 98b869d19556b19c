"""Build the rendered book (``make book``): the executed notebooks as a static site.

    python scripts/build_book.py        # -> build/book/index.html

Copies the committed notebooks, the READMEs and ``docs/`` with ``book/``'s configuration and
index into ``build/book-src``, writes the errata page (every notebook's "what the article says
vs what we measured" table and its verdicts, from the committed outputs), and runs Sphinx with
MyST-NB and the Sphinx Book Theme, which give every page the table of contents and
previous/next links. Nothing is executed: the pages show the committed outputs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
CONTENT = ["README.md", "README.zh.md", "CONTRIBUTING.md", "CHANGELOG.md", "LICENSE", "docs"]
VERDICT_PREFIXES = ("CONFIRMED", "NOT CONFIRMED")


def title(notebook: dict) -> str:
    """The notebook's title: the first heading of its first markdown cell."""
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    raise ValueError("a notebook without a '# ' title in its first markdown cell")


def comparison_table(notebook: dict) -> str | None:
    """The HTML of the notebook's "what the article says vs what we measured" table (the
    output of its ``comparison_table(...)`` cell), or None if it has none."""
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code" and "comparison_table(" in "".join(cell["source"]):
            for output in cell.get("outputs", []):
                html = output.get("data", {}).get("text/html")
                if html:
                    return "".join(html)
    return None


def verdicts(notebook: dict) -> list[str]:
    """Every verdict line the notebook printed, in order."""
    lines = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            text = "".join(output.get("text", ""))
            lines += [line for line in text.splitlines() if line.startswith(VERDICT_PREFIXES)]
    return lines


def errata(notebooks: list[Path]) -> str:
    """The errata page: per notebook, its comparison table and its verdicts."""
    parts = [
        "# 勘误一览 · Errata at a glance\n",
        "每个笔记本的“文章怎么说 / 我们测到什么”对照表和它检验的判定，取自已执行的笔记本（涉及比较"
        "的地方给出多个种子上的均值 ± 标准差）。每个标题链接到做这个实验的笔记本。\n",
        "<details><summary>English</summary>\n\nWhat every notebook measured against what the "
        "article says, and the verdicts it checked, gathered from the executed notebooks (mean ± "
        "standard deviation over seeds where a comparison is claimed). Each heading links to the "
        "notebook with the experiment.\n\n</details>\n",
    ]
    for path in notebooks:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        table, lines = comparison_table(notebook), verdicts(notebook)
        if table is None and not lines:
            continue
        parts.append(f"## [{title(notebook)}](notebooks/{path.name})\n")
        if table is not None:
            parts.append(f'<div class="errata-table">\n\n{table}\n\n</div>\n')
        if lines:
            parts.append("判定 · Verdicts:\n")
            parts.append("\n".join(f"- {line}" for line in lines) + "\n")
    return "\n".join(parts)


def assemble(source: Path) -> None:
    """Fill ``source`` with the book's pages, configuration and errata, from scratch."""
    if source.exists():
        shutil.rmtree(source)
    shutil.copytree(PROJECT / "book", source)
    for name in CONTENT:
        origin = PROJECT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name)
        else:
            shutil.copy2(origin, source / name)
    notebooks = sorted((PROJECT / "notebooks").glob("*.ipynb"))
    (source / "notebooks").mkdir()
    for path in notebooks:
        shutil.copy2(path, source / "notebooks" / path.name)
    (source / "errata.md").write_text(errata(notebooks), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROJECT / "build" / "book")
    parser.add_argument("--source", type=Path, default=PROJECT / "build" / "book-src")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    assemble(args.source)
    if args.out.exists():
        shutil.rmtree(args.out)
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-q", str(args.source), str(args.out)]
    if subprocess.run(command).returncode != 0:
        print("the book did not build: see Sphinx's messages above", file=sys.stderr)
        return 1
    print(f"wrote {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
