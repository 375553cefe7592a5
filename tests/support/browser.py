"""Headless Chromium for the dashboard tests (Debian ``chromium`` + ``chromium-driver``).

See ``/work/shared/browser-testing.md``: explicit binary and driver paths (no Selenium
Manager, no network), ``--no-sandbox`` (tests run as root), one browser per session.
``make test`` installs both packages when missing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
         "--window-size=1400,900")


def available() -> bool:
    return os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """A ``selenium.webdriver.Chrome`` with performance logging (the page's own requests)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
