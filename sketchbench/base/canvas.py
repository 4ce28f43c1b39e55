"""The canvas a query is rendered at: a size in pixels, or ``"dynamic"`` when a method picks each
sketch's canvas itself. One definition, used by every layer."""

from __future__ import annotations

from typing import Literal

#: the canvas of a dynamic method's cell
DYNAMIC: Literal["dynamic"] = "dynamic"

Canvas = int | Literal["dynamic"]


def is_dynamic(canvas: object) -> bool:
    return canvas == DYNAMIC


def canvas_label(canvas: Canvas) -> str:
    """``"64x64"`` or ``"dynamic"`` (tables)."""
    return DYNAMIC if is_dynamic(canvas) else f"{canvas}x{canvas}"


def canvas_order(canvas: Canvas) -> tuple[int, int]:
    """Sort key: fixed canvases ascending, dynamic last."""
    return (1, 0) if is_dynamic(canvas) else (0, int(canvas))
