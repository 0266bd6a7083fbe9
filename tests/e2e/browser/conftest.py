"""The browser tests' session: the whole system started once (as `make run` starts it, tests/support/system.py),
the world of world.py loaded through its public edges, and Debian's Chromium driven by Playwright
(`executable_path`: Playwright's own browser download is not used). Every screen a test reaches is checked with
axe-core (no serious or critical violation) and photographed into tests/e2e/browser/artifacts/ (ignored by git)."""

from __future__ import annotations

import re
import secrets
import shutil
import weakref
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, BrowserContext, Locator, Page, async_playwright, expect

from devstack import testinfra
from tests.e2e.browser.world import World, build_world
from tests.support.system import System, running_system

ARTIFACTS = Path(__file__).parent / "artifacts"
_axe = Axe()
# The JavaScript errors each page raised (kept beside the page: Page has a page_errors method of its own).
_PAGE_ERRORS: weakref.WeakKeyDictionary[Page, list[str]] = weakref.WeakKeyDictionary()


def chromium_path() -> str:
    """Debian's chromium (the Makefile installs it before pytest). Missing: fail, never skip."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is missing: `make test` installs it (apt-get install chromium) when run as root")
    return path


TRACE_URL_TEMPLATE = "http://traces.example.test/trace/{trace_id}"
"""The gateway's trace viewer page (TRACE_URL_TEMPLATE): history steps link to it. No viewer runs (TRACE_VIEWER=off,
so a local Phoenix cannot replace the template); the links are checked, never followed."""


@pytest.fixture(scope="session")
def browser_system(kafka_bootstrap: str, postgres_dsn: str) -> Iterator[System]:
    unique = f"{testinfra.run_id()}{secrets.token_hex(3)}"
    traces = {"TRACE_VIEWER": "off", "TRACE_URL_TEMPLATE": TRACE_URL_TEMPLATE}
    with running_system(kafka_bootstrap, postgres_dsn, unique, extra_env=traces) as running:
        yield running


@pytest.fixture(scope="session")
async def world(browser_system: System, kafka_bootstrap: str) -> World:
    base, sandbox = browser_system.ready()
    return await build_world(base, sandbox, kafka_bootstrap, browser_system.topics)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        await launched.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    made = await browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-US", timezone_id="UTC")
    made.set_default_timeout(15000)
    yield made
    await made.close()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    _PAGE_ERRORS[opened] = errors
    return opened


async def sign_in(page: Page, world: World, account: str, screen: str = "", user: str = "office") -> None:
    """Sign in as a user of `account` (the development sign-in page), then open `screen`."""
    await page.goto(f"{world.gateway}/dev/login?account_id={account}&user_id={user}")
    await expect(page.locator("#who")).to_contain_text(account)
    if screen:
        await page.goto(f"{world.gateway}/#{screen}")


async def mark_loaded(page: Page) -> None:
    """Mark the document: `still_same_document` proves later that no reload happened."""
    await page.evaluate("window.__sameDocument = true")


async def still_same_document(page: Page) -> bool:
    return bool(await page.evaluate("window.__sameDocument === true"))


async def check_screen(page: Page, name: str) -> None:
    """axe-core finds no serious or critical violation on what is on screen; a screenshot is saved."""
    await page.wait_for_timeout(300)  # let toasts and transitions settle for the picture
    await page.screenshot(path=str(ARTIFACTS / f"{re.sub(r'[^a-z0-9-]+', '-', name.lower())}.png"), full_page=True)
    results = await _axe.run(page)
    bad = [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]
    report = "\n".join(f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:5]}" for v in bad)
    assert not bad, f"accessibility violations on {name}:\n{report}"
    errors = _PAGE_ERRORS.get(page, [])
    assert not errors, errors


_CONTRAST = """(node) => {
  const rgb = (text) => text.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const clear = (n) => ["rgba(0, 0, 0, 0)", "transparent"].includes(getComputedStyle(n).backgroundColor);
  let back = node;
  while (back && clear(back)) back = back.parentElement;
  const fg = lum(rgb(getComputedStyle(node).color));
  const bg = lum(rgb(back ? getComputedStyle(back).backgroundColor : "rgb(255, 255, 255)"));
  return (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
}"""


async def text_contrast(locator: Locator) -> float:
    """The WCAG contrast ratio of an element's text against the background it sits on, as rendered now."""
    return float(await locator.evaluate(_CONTRAST))
