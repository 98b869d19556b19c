"""A notebook's parameters and a reader's own, smaller data: errors that name what to lower."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ftutils.errors import DataError


@contextlib.contextmanager
def lower_if_too_small(*names: str) -> Iterator[None]:
    """Re-raise a :class:`DataError` from the block (a class with fewer images than a split or
    a k-shot subset asks for) naming the parameters that ask for those images, so a reader
    whose folder is smaller than the defaults knows which to lower."""
    try:
        yield
    except DataError as error:
        raise DataError(
            f"{error}. The data has too few images for these parameters: lower "
            f"{', '.join(names)} in the parameters cell (its comments say how many images "
            "per class the defaults need)"
        ) from None
