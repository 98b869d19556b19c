"""``python -m ftutils``: see :mod:`ftutils.cli`."""

from ftutils.cli import main

raise SystemExit(main())
