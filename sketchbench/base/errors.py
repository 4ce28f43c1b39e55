"""One error type for everything a user can get wrong, and the exit codes the CLI uses.

Every expected failure (bad input, missing file, broken plugin, non-finite loss, ...) is raised as a
:class:`SketchbenchError` with a one-line message; the CLI prints that line and exits with the
error's code instead of showing a traceback.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    #: a run error, or (for ``compare``) a regression was found
    FAILED = 1
    #: bad usage or bad input: unknown name, unreadable file, bad value
    USAGE = 2
    #: a plugin failed to load under ``SKETCHBENCH_STRICT_PLUGINS=1``
    PLUGIN = 4
    #: interrupted (Ctrl-C), as a shell reports SIGINT
    INTERRUPTED = 130


#: how the library names a setting in a message: its Python name, except where the setting's value
#: is what went wrong (the command line spells each as its flag: ``sketchbench.cli.options.FLAGS``)
SETTING_NAMES: dict[str, str] = {"train": "train=False"}


class SketchbenchError(Exception):
    """An expected failure with a message meant for the user (one line).

    The library does not know its command line: a message that names a setting of a run writes it
    as ``{name}`` and lists it in ``settings`` (``SketchbenchError("method 'x' needs a teacher: pass
    {teacher} NAME", settings=("teacher",))``). ``str(error)`` spells it as the library's Python
    name (:data:`SETTING_NAMES`), :meth:`spelled` as a caller's (the CLI: ``--teacher``)."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str, *, exit_code: ExitCode | None = None, settings: tuple[str, ...] = ()) -> None:
        self.template = message
        self.settings = tuple(settings)
        super().__init__(self.spelled(SETTING_NAMES))
        if exit_code is not None:
            self.exit_code = exit_code

    def spelled(self, names: Mapping[str, str]) -> str:
        """The message with each of its settings named as ``names`` says (default: the setting's name)."""
        if not self.settings:
            return self.template
        return re.sub(r"\{(\w+)\}", lambda m: names.get(m.group(1), m.group(1)) if m.group(1) in self.settings
                      else m.group(0), self.template)


class DataError(SketchbenchError):
    """A dataset file is missing, truncated, of the wrong layout or unsafe."""


class PluginError(SketchbenchError):
    exit_code = ExitCode.PLUGIN


class TrainingError(SketchbenchError):
    """Training could not go on (for example the loss became NaN)."""

    exit_code = ExitCode.FAILED


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``" Did you mean 'x'?"`` when a close match exists, else a list of some valid names."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    if close:
        return " Did you mean " + " or ".join(repr(c) for c in close) + "?"
    shown = ", ".join(choices[:20]) + (", ..." if len(choices) > 20 else "")
    return f" Known: {shown}." if choices else ""
