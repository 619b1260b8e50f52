"""``python -m tracker``."""

from .cli import _entry

_entry()
