"""Chinese class names and titles render with real glyphs (no missing-glyph warning)."""

import warnings

import matplotlib as mpl
import matplotlib.pyplot as plt

from ftutils import fonts

#: In Matplotlib's missing-glyph warning: "... missing from font(s) X" since 3.9, "... missing
#: from current font" in 3.8 (the oldest requirements.txt allows: make test-min)
MISSING_GLYPH = "missing from"


def test_chinese_class_names_render_without_missing_glyphs():
    with mpl.rc_context():
        family = fonts.use_cjk_font()
        assert family is not None, "no CJK-capable font found: is mplfonts installed?"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fig, ax = plt.subplots()
            ax.set_title("模型微调 fine-tuning")
            ax.set_xticks(range(3), ["T恤", "裤子", "套头衫"])
            fig.canvas.draw()
            plt.close(fig)
    missing = [str(w.message) for w in caught if MISSING_GLYPH in str(w.message)]
    assert not missing, missing


def test_without_the_cjk_font_the_same_figure_warns():
    """The check above can fail: DejaVu Sans alone reports the missing glyphs."""
    with mpl.rc_context({"font.family": ["DejaVu Sans"]}):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fig, ax = plt.subplots()
            ax.set_title("模型微调")
            fig.canvas.draw()
            plt.close(fig)
    assert any(MISSING_GLYPH in str(w.message) for w in caught)
