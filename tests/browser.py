"""A real headless browser for tests: Debian's ``chromium`` driven through ``chromium-driver``
(Selenium). Both packages are installed with apt-get when missing, as the dev stack installs
``redis-server``; where that cannot be done the caller skips with the reason."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from influent.devstack import ensure_debian_package


def ensure_chromium() -> tuple[str, str]:
    """(chromium, chromedriver) paths, installing Debian's packages first when missing.
    Raises :class:`~influent.devstack.MissingPrerequisite` when they cannot be installed."""
    browser = ensure_debian_package("chromium", "chromium")
    driver = ensure_debian_package("chromedriver", "chromium-driver")
    return browser, driver


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 900) -> Iterator["object"]:
    """A headless Chromium WebDriver session, quit on the way out."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--force-device-scale-factor=1",
                "--lang=en-US"):
        options.add_argument(arg)
    session = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield session
    finally:
        session.quit()
