"""One self-contained HTML page: the charting library inlined, the data as JSON, a script that draws it.

The page loads nothing from anywhere: ECharts (``static/echarts.min.js``,
Apache-2.0, its licence beside it) and the page's own script are inlined, the
data is a JSON block, and a Content-Security-Policy forbids every request, so
the page opens the same from a file path, an e-mail attachment or a CI
artifact, offline. The same data gives the same bytes.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Final

import orjson

__all__ = ("STATIC", "page")

STATIC: Final = Path(__file__).parent / "static"
#: Nothing may be fetched: scripts and styles are inline, images only data: URLs (a chart saved as a picture).
_POLICY: Final = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
                  "connect-src 'none'; form-action 'none'; base-uri 'none'")


@cache
def _static(name: str) -> bytes:
    return (STATIC / name).read_bytes()


@cache
def _scripts(script: str) -> bytes:
    """The page's constant end: the charting library and the page's script (1.1 MB, encoded once)."""
    return (b"<script>\n" + _static("echarts.min.js") + b"\n</script>\n<script>\n" + _static(script)
            + b"</script>\n</body>\n</html>\n")


def _json(data: object) -> str:
    """JSON that an HTML parser reads as plain text inside its <script> block: ``<``, ``>`` and ``&`` (which only
    occur inside strings) are written ``\\u003c``, ``\\u003e``, ``\\u0026``, so no value can end the block
    (``</script>``) or switch the parser into another state (``<!--<script>`` would swallow the scripts after it)."""
    return (orjson.dumps(data).decode().replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026"))


def page(title: str, data: Mapping[str, object], script: str, *, reload_s: int | None = None) -> bytes:
    """The page: ``static/page.css``, ECharts, ``data`` (as ``JSON.parse`` of the block ``#data``) and the script
    ``static/SCRIPT``; with ``reload_s`` the browser reloads it that often (while a run is live)."""
    refresh = f'<meta http-equiv="refresh" content="{reload_s}">\n' if reload_s is not None else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"{refresh}<title>{html.escape(title)}</title>\n<style>\n{_static('page.css').decode()}</style>\n</head>\n"
        f'<body>\n<script type="application/json" id="data">{_json(data)}</script>\n'
    ).encode() + _scripts(script)
