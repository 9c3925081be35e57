"""Start the real app for a test: `python app.py` on a free loopback port with its own home
and annotation database; and the headless Chromium the browser tests drive."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]
MAX_DURATION_S = 8  # the app's clip limit in tests: a longer clip is refused


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(home: Path, **settings: str) -> tuple[subprocess.Popen, str]:
    """`python app.py` on a free loopback port with its own home and annotation database
    (and any further AVXPLAIN_* settings)."""
    port = free_port()
    env = {**os.environ, **settings, "AVXPLAIN_HOME": str(home), "GRADIO_SERVER_PORT": str(port),
           "AVXPLAIN_ANNOTATIONS_DB": str(home / "clicks.sqlite"), "AVXPLAIN_MAX_DURATION_S": str(MAX_DURATION_S),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    log = (home / "app.log").open("a")
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process, f"http://127.0.0.1:{port}/"
        except OSError:
            if process.poll() is not None:
                raise RuntimeError((home / "app.log").read_text())
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("the app did not start within 180 s")


def chromium_page(playwright, **context):
    """A page of a fresh headless Chromium (Debian's package); `context` as Playwright's new_context."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
    return browser, browser.new_context(**{"viewport": {"width": 1400, "height": 1000}, **context}).new_page()


@contextlib.contextmanager
def running_app(home: Path, **settings: str):
    """The app serving from `home` for the block's duration: its URL, annotation database, process and home."""
    process, url = start_app(home, **settings)
    try:
        yield {"url": url, "db": home / "clicks.sqlite", "process": process, "home": home}
    finally:
        process.terminate()
        process.wait(timeout=30)
