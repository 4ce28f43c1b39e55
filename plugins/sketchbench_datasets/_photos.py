"""Photo decoding shared by the file-based dataset loaders (QMUL-V2, Sketchy, FS-COCO).

Every photo becomes uint8 ``(S, S, 3)`` RGB. A file that does not decode is a
:class:`~sketchbench.base.errors.DataError` naming it: a broken photo would silently corrupt the gallery.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from sketchbench import DataError, data_limits, progress_bar


def load_photo(path: Path, size: int, *, pad: bool = False) -> np.ndarray:
    """Decode one photo to uint8 ``(size, size, 3)``.

    ``pad=False`` resizes straight to a square (the photo is square already, or the release's own
    protocol squashes it); ``pad=True`` letterboxes: the longer side is fitted and the rest padded
    (black, as ``ImageOps.pad`` does in the FS-COCO reference loaders).
    """
    try:
        with data_limits().open_image(path, f"photo {str(path)!r}", photo=True) as img:  # pixels checked first
            # JPEG: decode at a reduced scale that is still >= size on both sides (much faster)
            img.draft("RGB", (size, size))
            rgb = img.convert("RGB")
        if pad:
            rgb = ImageOps.pad(rgb, (size, size), method=Image.BICUBIC)
        elif rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.BICUBIC)
        return np.asarray(rgb, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"photo {str(path)!r} does not decode as an image ({msg})") from None


def load_photos(paths: Sequence[Path], size: int, *, pad: bool = False, desc: str = "photos") -> np.ndarray:
    """Decode photos into one uint8 ``(P, size, size, 3)`` array (a progress bar for big sets)."""
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, p in enumerate(progress_bar(paths, desc=desc, leave=False, hide=len(paths) < 200)):
        out[i] = load_photo(p, size, pad=pad)
    return out
