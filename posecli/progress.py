"""Progress bars: tqdm on stderr, shown only on a terminal and never with quiet."""

from __future__ import annotations

import sys


def progress(iterable=None, *, total=None, desc=None, quiet=False, unit="it", **kw):
    from tqdm import tqdm

    disable = quiet or not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, disable=disable,
                dynamic_ncols=True, leave=False, **kw)
