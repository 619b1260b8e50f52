"""Save a picture of a tracker HTML report (session_tracking_report.html) as docs/report.png.

usage: .venv/bin/python docs/screenshot.py [FOLDER] [--out docs/report.png] [--width 1280] [--max-height 1600]
                                          [--max-bytes 400000]

Without FOLDER it runs a small ``tracker demo`` (``--sessions 12 --duration 20``, about 25 s) into a temporary
folder and pictures the report it leaves; with FOLDER, a folder of tracker reports, it pictures that folder's
page (written first with ``tracker report`` when the folder has none). The page is opened in the system's
Chromium (Debian's ``chromium``; Playwright drives it, it downloads no browser of its own) at ``--width`` CSS
pixels, and the whole page is saved; a picture larger than ``--max-bytes`` is taken again, cut at
``--max-height`` pixels, to keep the repository small.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

HTML = "session_tracking_report.html"
DOCS = Path(__file__).resolve().parent


def _tracker(*args: str) -> None:
    """Run ``tracker ARGS`` with this interpreter; its own output is shown only when it fails."""
    result = subprocess.run([sys.executable, "-m", "tracker", *args], capture_output=True, text=True, check=False,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        sys.exit(f"tracker {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")


def screenshot(page_path: Path, out: Path, *, width: int, max_height: int, max_bytes: int) -> tuple[int, int]:
    """Save ``page_path`` as a PNG at ``out``, the whole page, or its top ``max_height`` pixels when the whole one
    is over ``max_bytes``; returns the picture's width and height in pixels."""
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("no chromium on the PATH: apt-get install chromium")
    with sync_playwright() as playwright:
        # --no-sandbox: run as root (as on CI and the development machines) Chromium's sandbox will not start.
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(page_path.resolve().as_uri())
            page.wait_for_selector("body[data-ready=true]", state="attached", timeout=30_000)
            if errors:
                sys.exit(f"the page failed: {errors[0]}")
            height = int(page.evaluate("() => document.documentElement.scrollHeight"))
            out.parent.mkdir(parents=True, exist_ok=True)
            picture = page.screenshot(full_page=True)
            if len(picture) > max_bytes and height > max_height:
                height = max_height
                picture = page.screenshot(full_page=True, clip={"x": 0, "y": 0, "width": width, "height": height})
            out.write_bytes(picture)
        finally:
            browser.close()
    return width, height


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("folder", nargs="?", type=Path, help="a folder of tracker reports (default: run a demo)")
    parser.add_argument("--out", type=Path, default=DOCS / "report.png", help="the PNG to write (default: %(default)s)")
    parser.add_argument("--width", type=int, default=1280, help="viewport width in CSS pixels (default: %(default)s)")
    parser.add_argument("--max-height", type=int, default=1600,
                        help="the height in pixels a picture too large is cut at (default: %(default)s)")
    parser.add_argument("--max-bytes", type=int, default=400_000,
                        help="the largest PNG kept whole, in bytes (default: %(default)s)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tracker-screenshot-") as temp:
        folder: Path = args.folder
        if folder is None:
            _tracker("demo", "--sessions", "12", "--duration", "20", "--out", temp)
            folder = Path(temp) / "reports"  # the demo's log is beside it, events.jsonl
        elif not (folder / HTML).is_file():
            _tracker("report", str(folder))
        width, height = screenshot(folder / HTML, args.out, width=args.width, max_height=args.max_height,
                                   max_bytes=args.max_bytes)
    print(f"wrote {args.out} ({width}x{height} px, {args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
