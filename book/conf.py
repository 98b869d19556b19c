"""Sphinx configuration of the rendered book (``make book``: scripts/build_book.py).

The executed notebooks are rendered as they were committed (MyST-NB, no execution), with the
Sphinx Book Theme's table of contents and previous/next links.
"""

project = "预训练图像分类器的微调 · Fine-tuning pretrained image classifiers"
author = "The fine-tuning companion contributors"
copyright = "the fine-tuning companion contributors, MIT licence"

extensions = ["myst_nb"]
nb_execution_mode = "off"  # the committed outputs, from one clean run each
nb_merge_streams = True
myst_heading_anchors = 3  # "README.md#chapters" and the like resolve to headings
myst_enable_extensions = ["html_image", "dollarmath"]  # the article's own $z_i$ in quotes
suppress_warnings = ["mystnb.unknown_mime_type"]

html_theme = "sphinx_book_theme"
html_title = "预训练图像分类器的微调 · Fine-tuning pretrained image classifiers"
html_theme_options = {
    "show_toc_level": 2,
    "show_navbar_depth": 1,
    "use_download_button": True,
}
html_show_sourcelink = False
html_search_language = "zh"  # the search index splits Chinese into words (jieba) as well as English
