"""Chinese text in figures: class names and titles from the article render as glyphs, not boxes.

matplotlib's default font (DejaVu Sans) has no CJK glyphs. :func:`use_cjk_font` keeps DejaVu
Sans for Latin text and adds a CJK-capable family behind it (matplotlib falls back per glyph,
since 3.6): the first one installed on the system, else Noto Sans CJK SC from the ``mplfonts``
package, a dependency of this project. ``ftutils.setup()`` calls it once for a notebook's own
figures; ftutils' plotting functions select the font themselves (:func:`with_cjk_font`), for
the figure they draw only, so they need no ``setup()`` first.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from collections.abc import Callable, Iterator
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
    """Put a CJK-capable family behind matplotlib's first sans-serif font; return it or None.

    Idempotent: a second call leaves the settings as the first left them."""
    family = find_cjk_family()
    if family is None:
        return None
    mpl.rcParams["font.family"] = _families(family)  # per-glyph fallback goes through this list
    return family


@contextlib.contextmanager
def cjk_font() -> Iterator[str | None]:
    """Within the block, a CJK-capable family falls back behind the fonts in use (text
    created there keeps it); afterwards the caller's settings are as they were."""
    family = find_cjk_family()
    if family is None:
        yield None
        return
    with mpl.rc_context({"font.family": _families(family)}):
        yield family


def with_cjk_font(plot: Callable) -> Callable:
    """``plot`` drawing its figure under :func:`cjk_font`: Chinese class names and titles
    show as glyphs whether or not ``setup()`` ran."""

    @functools.wraps(plot)
    def drawn(*args, **kwargs):
        with cjk_font():
            return plot(*args, **kwargs)

    return drawn


def _families(family: str) -> list[str]:
    """matplotlib's first sans-serif font, then ``family``: Latin text looks the same."""
    return [mpl.rcParams["font.sans-serif"][0], family]
