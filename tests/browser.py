"""A real headless Chromium for tests, driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-headless-shell", "chromium-browser", "google-chrome")
# No network beyond loopback, no first-run or background services: the page stands alone.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


def chromium_binary() -> str | None:
    """The path of an installed Chromium, or None."""
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


@dataclass
class Page:
    """An open page and what its console and scripts reported."""

    page: Any
    errors: list[str] = field(default_factory=list)

    def locator(self, selector: str) -> Any:
        return self.page.locator(selector)


@contextlib.contextmanager
def open_page(path: Path, profile: Path) -> Iterator[Page]:
    """Open a local file in a fresh headless Chromium profile; collect console errors and
    uncaught page errors in ``Page.errors``."""
    from playwright.sync_api import sync_playwright

    binary = chromium_binary()
    assert binary is not None
    with sync_playwright() as driver:
        browser = driver.chromium.launch_persistent_context(
            str(profile), executable_path=binary, args=FLAGS, headless=True,
            viewport={"width": 1200, "height": 900}, offline=True,
        )  # fmt: skip
        try:
            page = browser.new_page()
            opened = Page(page)
            page.on("console", lambda m: m.type == "error" and opened.errors.append(m.text))
            page.on("pageerror", lambda exc: opened.errors.append(str(exc)))
            page.on("requestfailed", lambda r: opened.errors.append(f"request failed: {r.url}"))
            page.goto(path.resolve().as_uri(), wait_until="load")
            yield opened
        finally:
            browser.close()
