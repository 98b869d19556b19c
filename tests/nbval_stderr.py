"""pytest plugin for the notebook tests: never compare stderr.

TensorFlow writes C-level logs to stderr under Jupyter but not under pytest, so stderr in
a committed notebook says nothing about its results.
"""


def pytest_collectstart(collector):
    if hasattr(collector, "skip_compare"):
        collector.skip_compare = (*collector.skip_compare, "stderr")
