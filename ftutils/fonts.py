"""Chinese text in figures: class names and titles from the article render as glyphs, not boxes.

matplotlib's default font (DejaVu Sans) has no CJK glyphs. :func:`use_cjk_font` keeps DejaVu
Sans for Latin text and adds a CJK-capable family behind it (matplotlib falls back per glyph,
since 3.6): the first one installed on the system, else Noto Sans CJK SC from the ``mplfonts``
package, a dependency of this project.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import matplotlib as mpl
from matplotlib import font_manager

#: CJK-capable families common on Linux, macOS and Windows, in order of preference.
SYSTEM_CJK_FAMILIES = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Micro Hei",
    "PingFang SC",
    "Microsoft YaHei",
)

#: The font file used when no system family is installed (SIL Open Font License).
BUNDLED_FONT = Path("fonts") / "NotoSansCJKsc-Regular.otf"


def find_cjk_family() -> str | None:
    """An installed CJK-capable family, registering the ``mplfonts`` copy if needed; or None."""
    installed = {entry.name for entry in font_manager.fontManager.ttflist}
    for family in SYSTEM_CJK_FAMILIES:
        if family in installed:
            return family
    spec = importlib.util.find_spec("mplfonts")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / BUNDLED_FONT
    if not path.is_file():
        return None
    font_manager.fontManager.addfont(str(path))
    return font_manager.FontProperties(fname=str(path)).get_name()


def use_cjk_font() -> str | None:
    """Put a CJK-capable family behind matplotlib's first sans-serif font; return it or None."""
    family = find_cjk_family()
    if family is None:
        return None
    latin = mpl.rcParams["font.sans-serif"][0]
    mpl.rcParams["font.family"] = [latin, family]  # per-glyph fallback goes through this list
    return family
