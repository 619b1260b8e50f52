"""Fixtures shared by several test modules."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

T = TypeVar("T")
#: Checks started when the session's tests are known, run beside the tests (mypy takes seconds with a cold
#: cache); the test that needs one takes it from here.
BACKGROUND: dict[str, subprocess.Popen[str]] = {}


def pytest_collection_finish(session: pytest.Session) -> None:
    if any(item.name == "test_mypy_strict" for item in session.items):
        BACKGROUND["mypy"] = subprocess.Popen([str(Path(sys.executable).parent / "mypy")],
                                              cwd=Path(__file__).parent.parent, stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, text=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for process in BACKGROUND.values():  # a run stopped before the test that waits for it
        if process.poll() is None:
            process.kill()
            process.wait()
#: How long one task in the browser may take before the test fails (a hung page must not hang the suite).
BROWSER_TIMEOUT = 60.0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB tmpfs (room for the HTML report, about 1.2 MB) mounted for the test (the tests run as root, as
    CI does)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


class Chromium:
    """The system's headless Chromium, driven by Playwright on a thread of its own.

    ``run(task)`` calls ``task(browser)`` on that thread and returns its result (or raises its exception).
    Playwright's sync API marks its event loop as running on the thread that drives it, between calls too: on
    the main thread every later ``asyncio.run`` of the session (tests of the emitter, of tracking) would fail.
    """

    def __init__(self, executable: str) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chromium")
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        try:
            self._thread.submit(self._start, executable).result(BROWSER_TIMEOUT)
        except BaseException:
            self.close()
            raise

    def _start(self, executable: str) -> None:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        # --no-sandbox: the tests run as root (as CI does), where Chromium's sandbox refuses to start.
        self._browser = self._playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])

    def run(self, task: Callable[[Browser], T]) -> T:
        """``task(browser)``, run on the browser's thread."""

        def call() -> T:
            assert self._browser is not None
            return task(self._browser)

        return self._thread.submit(call).result(BROWSER_TIMEOUT)

    def _stop(self) -> None:
        try:
            if self._browser is not None:
                self._browser.close()
        finally:
            if self._playwright is not None:
                self._playwright.stop()

    def close(self) -> None:
        try:
            self._thread.submit(self._stop).result(BROWSER_TIMEOUT)
        finally:
            self._thread.shutdown(wait=False, cancel_futures=True)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Chromium]:
    """One headless Chromium for the session: Debian's ``chromium`` (.ci/run installs it); a test fails without it."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("no chromium on the PATH: the HTML report is tested in Debian's chromium "
                    "(apt-get install chromium, as .ci/run does)")
    try:
        browser = Chromium(executable)
    except Exception as exc:  # playwright missing, or Chromium cannot start: a failure, never a skip
        pytest.fail(f"cannot start Chromium ({executable}) with Playwright: {type(exc).__name__}: {exc}")
    try:
        yield browser
    finally:
        browser.close()


class NatsServer:
    """A real ``nats-server`` with JetStream on a free loopback port, its file store in a folder of the test's.

    ``stop()``/``start()`` restart it on the same port and store (a server restart); ``pause()``/``resume()`` send
    SIGSTOP/SIGCONT (a server that hangs). ``url`` is its address.
    """

    def __init__(self, store: Path) -> None:
        self.store = store
        self.port = _free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        import socket

        binary = shutil.which("nats-server") or str(Path(sys.executable).parent / "nats-server")
        self.process = subprocess.Popen(
            [binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:  # ready when it takes connections (a condition, with a timeout)
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not start on port {self.port} (exit {self.process.poll()})")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None

    def pause(self) -> None:
        """Stop the server (SIGSTOP), and wait until the kernel says it is stopped: the signal takes effect a
        moment after it is sent, and a request sent in that moment would still be answered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        stat = Path(f"/proc/{self.process.pid}/stat")
        deadline = time.monotonic() + 10
        while stat.read_text().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server {self.process.pid} did not stop within 10 s of SIGSTOP")
            time.sleep(0.001)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A real JetStream server for one test (fails, never skips, when nats-server cannot start)."""
    server = NatsServer(tmp_path / "nats-store")
    try:
        yield server
    finally:
        server.stop()
