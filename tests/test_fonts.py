"""Chinese class names and titles render with real glyphs (no missing-glyph warning)."""

import warnings

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

from ftutils import data, fonts, plots

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


def _drawn_with_warnings(draw) -> list[str]:
    """The warnings while ``draw()`` makes a figure and the figure is rendered."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        draw()
        figure = plt.gcf()
        figure.canvas.draw()
        plt.close(figure)
    return [str(w.message) for w in caught]


def test_plots_select_the_cjk_font_themselves_without_setup():
    """No ``setup()``, matplotlib's defaults: the class names still render, and the caller's
    settings are left as they were."""
    names = ("猫", "狗", "鸟")
    labels = np.array([0, 1, 2, 2])
    shown = data.ImageData(np.zeros((4, 8, 8, 3), "uint8"), labels, names)
    with mpl.rc_context({"font.family": ["DejaVu Sans"]}):
        messages = _drawn_with_warnings(
            lambda: plots.plot_confusion_matrix(labels, labels[::-1], names, "混淆矩阵")
        )
        messages += _drawn_with_warnings(lambda: plots.plot_samples(shown, 1, "样本"))
        assert mpl.rcParams["font.family"] == ["DejaVu Sans"]
    missing = [message for message in messages if MISSING_GLYPH in message]
    assert not missing, missing


def test_use_cjk_font_is_idempotent():
    with mpl.rc_context():
        fonts.use_cjk_font()
        once = list(mpl.rcParams["font.family"])
        fonts.use_cjk_font()
        assert list(mpl.rcParams["font.family"]) == once
