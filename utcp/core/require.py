"""A zero-width requirement for the construct declaration of the wire format.

The declaration (``SEGMENT_LAYOUT`` in :mod:`utcp.core.wire`) checks what a
segment must satisfy with these. They live apart from it so that wire.py can be
compiled with mypyc (see setup.py): mypyc cannot derive a class from one of
construct's, whose types it cannot see.
"""

from __future__ import annotations

from typing import Any

from construct import Construct, ExplicitError


class Invalid(ExplicitError):
    """A parse-time requirement of the layout failed; ``reason`` says which."""

    def __init__(self, reason: str, path: str | None = None) -> None:
        super().__init__(reason, path)
        self.reason = reason


class Require(Construct):
    """Zero-width field: while parsing, ``holds(ctx)`` must be true, else ``describe(ctx)``.

    The failure is an ExplicitError so that GreedyRange passes it on instead of
    treating it as the end of the list.
    """

    def __init__(self, holds: Any, describe: Any) -> None:
        super().__init__()
        self.holds = holds
        self.describe = describe
        self.flagbuildnone = True

    def _parse(self, stream: Any, context: Any, path: str) -> None:
        if not self.holds(context):
            raise Invalid(self.describe(context), path)

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> None:
        return None

    def _sizeof(self, context: Any, path: str) -> int:
        return 0
