"""The dashboard in Chromium, as an office manager uses it: sign in, move between weeks and modules, filter by
status, open a cell (mixed cells show their counts, the Errors panel is open), follow an error to the mapping row
that fixes it, map it and watch the entries turn To do without a reload."""

from __future__ import annotations

import re
import time
from datetime import date, timedelta

import httpx
import pytest
from playwright.async_api import Locator, Page, expect

from tests.e2e.browser.conftest import check_screen, mark_loaded, sign_in, still_same_document, text_contrast
from tests.e2e.browser.world import ACCOUNT, WED, WEEK, World, timelog
from tests.support.kafka import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
DASH = "\N{EN DASH}"


def cell(page: Page, site: str, day: object) -> Locator:
    return page.locator(f'td.cell[data-site="{site}"][data-date="{day}"]')


async def test_sign_in_weeks_modules_and_status_filter(page: Page, world: World) -> None:
    await sign_in(page, world, ACCOUNT)
    await expect(page.get_by_role("tab", name="Manpower")).to_have_attribute("aria-selected", "true")
    await expect(page).to_have_url(re.compile(r"#manpower"))
    await check_screen(page, "01-manpower-this-week")

    # The week picker, then the arrows: the grid follows and so does the URL.
    await page.locator("#week-picker").fill(str(WED))
    await expect(page.locator("#week-label")).to_have_text(f"Nov 16 {DASH} Nov 22")
    await expect(page).to_have_url(re.compile(rf"week={WEEK}"))
    await expect(page.get_by_role("rowheader", name="Harbor Bridge")).to_be_visible()
    await page.get_by_role("button", name="Next week").click()
    await expect(page.locator("#week-label")).to_have_text(f"Nov 23 {DASH} Nov 29")
    await page.get_by_role("button", name="Previous week").click()
    await expect(page.locator("#week-label")).to_have_text(f"Nov 16 {DASH} Nov 22")
    await check_screen(page, "02-manpower-week")

    # Modules keep the week; a mixed cell shows each status with its count, not one status.
    await page.get_by_role("tab", name="Timecard").click()
    await expect(page).to_have_url(re.compile(rf"#timecard\?week={WEEK}"))
    tower = cell(page, "s-tower", WED)
    await expect(tower.locator(".badge.s-todo")).to_have_text("1 To do")
    await expect(tower.locator(".badge.s-non_publishable")).to_have_text("2 Non publishable")
    await check_screen(page, "03-timecard-week-mixed-cell")

    await page.get_by_label("Status", exact=True).select_option(label="Non publishable")
    await expect(page).to_have_url(re.compile(r"status=non_publishable"))
    await expect(page.get_by_role("rowheader", name="Harbor Bridge")).to_have_count(0)
    await expect(page.get_by_role("rowheader", name="Tower A")).to_be_visible()
    await check_screen(page, "04-timecard-filter-non-publishable")
    await page.get_by_label("Status", exact=True).select_option(label="All statuses")
    await expect(page.get_by_role("rowheader", name="Harbor Bridge")).to_be_visible()

    await page.get_by_role("tab", name="Production quantity").click()
    await expect(cell(page, "s-tower", WED)).to_contain_text("03-300")
    await expect(cell(page, "s-tower", WED)).to_contain_text("4 m3")
    await check_screen(page, "05-production-quantity-week")

    # Hovering a top tab keeps its label readable (it once turned white on near-white).
    for name in ("Timecard", "Data mapping", "Production quantity"):
        tab = page.get_by_role("tab", name=name)
        await tab.hover()
        assert await text_contrast(tab) >= 4.5, name

    # Keyboard: arrows move between the top tabs.
    await page.get_by_role("tab", name="Production quantity").focus()
    await page.keyboard.press("ArrowLeft")
    await expect(page.get_by_role("tab", name="Timecard")).to_have_attribute("aria-selected", "true")
    await expect(page).to_have_url(re.compile(r"#timecard"))


async def test_open_a_cell_errors_open_with_names(page: Page, world: World) -> None:
    await sign_in(page, world, ACCOUNT, f"timecard?week={WEEK}")
    tower = cell(page, "s-tower", WED)
    await tower.locator("a.cell-open").focus()  # by keyboard: the open area is a link
    await page.keyboard.press("Enter")
    details = page.get_by_role("dialog", name="Tower A")
    await expect(details).to_be_visible()
    await expect(page).to_have_url(re.compile(rf"cell={WED}/s-tower"))
    await expect(details.locator("tbody tr")).to_have_count(3)
    # The Errors panel is open from the start and names the missing mapping.
    errors = details.locator("section.errors")
    await expect(errors).to_be_visible()
    await expect(errors).to_contain_text("Cost code 26-050 Wiring is not mapped for project Tower A")
    await expect(errors.get_by_role("link", name="Map it in Cost codes")).to_be_visible()
    # Names, never raw Procore ids: the payroll item is the Procore payroll type's name.
    payroll = details.locator("td.c-payroll_item")
    await expect(payroll.filter(has_text="Regular Time")).not_to_have_count(0)
    await expect(payroll.filter(has_text=re.compile(r"\d{6,}"))).to_have_count(0)
    await check_screen(page, "06-timecard-details-errors")

    # The More actions menu works by keyboard; Escape closes it, then the dialog.
    more = details.get_by_role("button", name="More actions")
    await more.focus()
    await page.keyboard.press("ArrowDown")
    await expect(details.get_by_role("menuitem", name="Force publish all")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(details.get_by_role("menu")).to_be_hidden()
    await expect(more).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(details).to_be_hidden()
    await expect(page).not_to_have_url(re.compile(r"cell="))


async def test_error_link_leads_to_the_mapping_row_and_entries_turn_to_do_live(page: Page, world: World) -> None:
    # A second window keeps the week on screen: the mapping made in the first turns its cell To do live.
    watcher = await page.context.new_page()
    await sign_in(watcher, world, ACCOUNT, f"timecard?week={WEEK}")
    await expect(cell(watcher, "s-tower", WED).locator(".badge.s-non_publishable")).to_be_visible()
    await mark_loaded(watcher)

    await page.goto(f"{world.gateway}/#timecard?week={WEEK}&cell={WED}/s-tower")
    await mark_loaded(page)
    details = page.get_by_role("dialog", name="Tower A")
    await details.get_by_role("link", name="Map it in Cost codes").click()
    await expect(page).to_have_url(re.compile(rf"#mapping\?tab=cost_code&row=cc-wiring&project={world.tower_project}"))
    await expect(page.get_by_role("tab", name="Cost codes")).to_have_attribute("aria-selected", "true")
    row = page.locator("tr.wanted")
    await expect(row).to_contain_text("Wiring")
    choice = row.get_by_role("combobox")
    await expect(choice).to_be_focused()
    await expect(page.locator("#mapping-project")).to_have_value(str(world.tower_project))
    await check_screen(page, "07-mapping-row-from-error")

    await choice.select_option(label="26-050 · Wiring")
    mapped_at = time.monotonic()
    await expect(cell(watcher, "s-tower", WED).locator(".badge.s-non_publishable")).to_have_count(0, timeout=10000)
    print(f"\nmapping → To do on screen (no reload): {(time.monotonic() - mapped_at) * 1000:.0f} ms")
    await expect(cell(watcher, "s-tower", WED).locator(".badge.s-todo")).to_be_visible()
    assert await still_same_document(watcher)
    await expect(page.locator(".toast.ok")).to_be_visible()
    await page.go_back()  # back to the open cell: the same document, nothing reloaded
    details = page.get_by_role("dialog", name="Tower A")
    await expect(details.locator("tbody tr.s-todo")).to_have_count(3, timeout=5000)
    await expect(details.locator("section.errors")).to_be_hidden()
    await page.keyboard.press("Escape")
    await expect(cell(page, "s-tower", WED).locator(".badge.s-todo")).to_be_visible()
    await expect(cell(page, "s-tower", WED).locator(".badge.s-non_publishable")).to_have_count(0)
    assert await still_same_document(page)
    await check_screen(page, "08-timecard-after-mapping")


async def test_signed_out_says_how_to_sign_in(page: Page, world: World) -> None:
    await page.goto(f"{world.gateway}/")
    await expect(page.get_by_role("heading", name="You are not signed in")).to_be_visible()
    await check_screen(page, "00-signed-out")


async def test_a_week_of_many_job_sites_comes_fifty_at_a_time(page: Page, world: World) -> None:
    """Past 50 job sites a week shows a page at a time: the pager says which, Next and Previous move, the filter
    finds a job site by name or number, and the page and filter are in the URL."""
    day = date(2026, 10, 5)  # a week no other test reads
    await world.timelogs(
        [
            timelog(f"tl-page-{i}", "e1", "co-acme", f"s-page-{i:02d}", day, 8, cost_code_id="cc-concrete")
            for i in range(1, 56)
        ]
    )

    async def job_sites() -> int:
        async with httpx.AsyncClient(base_url=world.gateway, timeout=10) as gw:
            params: dict[str, str | int] = {"week_start": str(day), "limit": 1}
            board = await gw.get("/api/modules/manpower/dashboard", params=params, headers=world.headers)
        return int(board.json()["total_rows"])

    await eventually(job_sites, lambda n: n == 55, timeout_s=45, what="55 job sites in the week")
    await sign_in(page, world, ACCOUNT, f"manpower?week={day}")
    pager = page.get_by_role("group", name="Job sites shown")
    rows = page.locator("table.grid tbody tr")
    await expect(pager).to_contain_text(f"Job sites 1{DASH}50 of 55")
    await expect(rows).to_have_count(50)
    await expect(pager.get_by_role("button", name=re.compile("Previous job sites"))).to_be_disabled()
    await check_screen(page, "05-job-site-pages")

    await pager.get_by_role("button", name=re.compile("Next job sites")).click()
    await expect(pager).to_contain_text(f"Job sites 51{DASH}55 of 55")
    await expect(rows).to_have_count(5)
    await expect(page.get_by_role("rowheader", name="s-page-55")).to_be_visible()
    await expect(page).to_have_url(re.compile(r"page=2"))
    await expect(pager.get_by_role("button", name=re.compile("Next job sites"))).to_be_disabled()

    await pager.get_by_role("searchbox", name="Find job sites").fill("S-PAGE-07")
    await expect(page).to_have_url(re.compile(r"q=S-PAGE-07"))
    await expect(pager).to_contain_text(f"Job sites 1{DASH}1 of 1")
    await expect(rows).to_have_count(1)
    await expect(page.get_by_role("rowheader", name="s-page-07")).to_be_visible()
    await expect(pager.get_by_role("searchbox", name="Find job sites")).to_be_focused()  # typing goes on


async def test_a_live_update_keeps_keyboard_focus_on_the_same_cell(page: Page, world: World) -> None:
    """Someone tabbing through the grid keeps their place when a live update re-draws it (it used to drop focus
    to the page, so the next Enter did nothing)."""
    week = WEEK + timedelta(days=14)  # a week no other browser test looks at
    first, second = week + timedelta(days=1), week + timedelta(days=3)
    await world.timelogs([timelog("tl-focus-1", "e1", "co-bolt", "s-bridge", first, 6, crew_tag="Focus crew")])
    await sign_in(page, world, ACCOUNT, f"manpower?week={week}")
    link = cell(page, "s-bridge", first).locator("a.cell-open")
    await expect(link).to_be_visible(timeout=30000)
    await link.focus()
    await page.evaluate("document.querySelector('#board table').dataset.before = 'yes'")

    # A timelog for another day of the week: the live event re-draws the grid while the link has focus.
    await world.timelogs([timelog("tl-focus-2", "e3", "co-bolt", "s-bridge", second, 7, crew_tag="Focus crew")])
    await expect(cell(page, "s-bridge", second).locator("a.cell-open")).to_be_visible(timeout=30000)
    assert await page.evaluate("!document.querySelector('#board table').dataset.before"), "the grid was re-drawn"
    await expect(link).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("dialog", name="Harbor Bridge")).to_be_visible()
