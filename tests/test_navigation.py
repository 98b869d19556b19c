"""Every notebook links to its neighbours and to the chapter table, and the links resolve."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_navigation_links_are_up_to_date():
    result = subprocess.run(
        [sys.executable, "scripts/navigation.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + "Run: python scripts/navigation.py"


def test_every_link_in_the_notebooks_and_docs_resolves():
    sources = [*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("*.md"), *ROOT.glob("docs/*.md")]
    broken = []
    for source in sources:
        for target in re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", source.read_text("utf-8")):
            if not (source.parent / target).exists():
                broken.append(f"{source.relative_to(ROOT)} -> {target}")
    assert not broken, broken
