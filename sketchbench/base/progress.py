"""Progress bars that honour ``TQDM_DISABLE``.

tqdm reads ``TQDM_DISABLE`` only when ``disable`` is not passed, and every bar here passes it (to hide
bars on other torchrun ranks or on short loops). :func:`hidden` combines both, so ``TQDM_DISABLE=1``
(CI, log files) silences every bar.
"""

from __future__ import annotations

import os
from typing import Any


def hidden(condition: bool = False) -> bool:
    """Whether a bar should be hidden: ``condition`` (e.g. not the main process, or a short loop),
    or ``TQDM_DISABLE`` set to a true value."""
    return condition or os.environ.get("TQDM_DISABLE", "").strip().lower() in ("1", "true", "yes", "on")


def progress_bar(iterable: Any = None, *, hide: bool = False, **kwargs: Any) -> Any:
    """A tqdm bar on stderr that ``TQDM_DISABLE=1`` silences (``hide``: also hide it, e.g. for a short loop)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=hidden(hide), **kwargs)
