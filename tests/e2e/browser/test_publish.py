"""Publishing in Chromium: Publish a cell and watch Published arrive without a reload; a Procore user edits the
record (the sandbox's control API) and our next publish ends in a conflict that says what to do; Force publish
only through a confirmation that shows Procore's current values beside ours, and writes nothing when cancelled."""

from __future__ import annotations

import re
import time
from decimal import Decimal
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.e2e.browser.conftest import check_screen, mark_loaded, sign_in, still_same_document
from tests.e2e.browser.world import ACCOUNT, MON, WEEK, World, timelog
from tests.support.kafka import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


async def test_publish_live_conflict_and_force_publish_with_the_diff(page: Page, world: World) -> None:
    await sign_in(page, world, ACCOUNT, f"manpower?week={WEEK}")
    await mark_loaded(page)
    await expect(page.locator("body")).to_have_attribute("data-live", "open")  # the server-sent events stream
    bridge = page.locator(f'td.cell[data-site="s-bridge"][data-date="{MON}"]')
    await expect(bridge.locator(".badge.s-todo")).to_be_visible()
    where = f"Harbor Bridge, {MON:%A}, {MON:%B} {MON.day}, {MON.year}"

    # The actions sit apart from the open area: clicking the numbers opens the cell, nothing is published.
    await bridge.locator(".numbers").click()
    await expect(page.get_by_role("dialog", name="Harbor Bridge")).to_be_visible()
    await page.keyboard.press("Escape")
    assert await world.records("manpower_logs") == []

    await bridge.get_by_role("button", name=f"Publish: {where}", exact=True).click()
    clicked = time.monotonic()
    await expect(bridge.locator(".badge.s-published")).to_be_visible(timeout=10000)
    print(f"\nPublish click → Published on screen (no reload): {(time.monotonic() - clicked) * 1000:.0f} ms")
    assert await still_same_document(page)
    (record,) = await world.records("manpower_logs")
    assert record["num_workers"] == 2
    await check_screen(page, "10-manpower-published")

    # A Procore user edits the log; then MobiClocks changes (a timelog's new revision): Updated, live.
    await world.edit_in_procore("manpower_logs", record["id"], {"num_workers": 5, "notes": "Fixed by the PM"})
    await world.timelogs(
        [timelog("tl-m2", "e2", "co-acme", "s-bridge", MON, 7, revision=2, cost_code_id="cc-concrete")]
    )
    await expect(bridge.locator(".badge.s-updated")).to_be_visible(timeout=10000)

    # Published from the open details: the failure's toast shows above that dialog and its "See why" is clickable
    # (a toast left behind a modal dialog is inert: Playwright's click would find the dialog in its way and fail).
    await bridge.locator("a.cell-open").click()
    opened = page.get_by_role("dialog", name="Harbor Bridge")
    await opened.locator(".drawer-actions").get_by_role("button", name="Publish", exact=True).click()
    failure = opened.locator(".toast.error", has_text="could not be published")
    await expect(failure).to_be_visible(timeout=10000)
    see_why = failure.get_by_role("link", name="See why")
    box = await see_why.bounding_box()
    assert box is not None
    on_top = await page.evaluate(
        "([x, y]) => document.elementFromPoint(x, y)?.textContent", [box["x"] + box["width"] / 2, box["y"] + 4]
    )
    assert on_top == "See why", f"the toast's link is covered by {on_top!r}"
    await check_screen(page, "11a-toast-above-details")
    await see_why.click()
    await expect(page).to_have_url(re.compile(rf"cell={MON}/s-bridge"))
    await expect(opened.locator("tbody tr.s-failed")).to_have_count(1)
    await page.keyboard.press("Escape")
    await expect(opened).to_be_hidden()
    await expect(bridge.locator(".badge.s-failed")).to_be_visible(timeout=10000)
    await expect(bridge).to_contain_text("changed in Procore")
    assert await still_same_document(page)
    await check_screen(page, "11-manpower-conflict")

    # The cell's Force publish asks first too; Cancel writes nothing.
    await bridge.get_by_role("button", name=f"Force publish: {where}").click()
    asked = page.get_by_role("dialog", name=re.compile("Force publish"))
    await expect(asked).to_contain_text("Changed in Procore")
    await asked.get_by_role("button", name="Cancel").click()
    await expect(asked).to_be_hidden()
    assert (await world.records("manpower_logs"))[0]["num_workers"] == 5

    # The conflict says what to do and offers no Republish (it could only fail again).
    await bridge.locator("a.cell-open").click()
    details = page.get_by_role("dialog", name="Harbor Bridge")
    await expect(details).to_contain_text("Review the differences and force publish")
    row = details.locator("tbody tr")
    await expect(row.get_by_role("button", name="Republish")).to_have_count(0)
    await check_screen(page, "12-conflict-details")

    # Force publish all: the confirmation reads Procore now and shows its values beside ours.
    await details.get_by_role("button", name="More actions").click()
    await details.get_by_role("menuitem", name="Force publish all").click()
    confirm = page.get_by_role("dialog", name=re.compile("Force publish"))
    await expect(confirm).to_be_visible()
    await expect(confirm).to_contain_text("Changed in Procore")
    changed = confirm.locator("tr.differs")
    await expect(changed.first).to_be_visible()
    assert "5" in await changed.first.inner_text()
    await check_screen(page, "13-force-publish-confirmation")
    await confirm.get_by_role("button", name="Cancel").click()
    await expect(confirm).to_be_hidden()
    (unchanged,) = await world.records("manpower_logs")
    assert unchanged["num_workers"] == 5, "cancelled: nothing may be written to Procore"

    await details.get_by_role("button", name="More actions").click()
    await details.get_by_role("menuitem", name="Force publish all").click()
    confirm = page.get_by_role("dialog", name=re.compile("Force publish"))
    await expect(confirm).to_contain_text("7.50")

    # While the confirmation is open the entry changes (a timelog's new revision: 9 h): confirming what was shown
    # is refused, the toast says so above the dialog, and a fresh confirmation shows the new values.
    await world.timelogs(
        [timelog("tl-m2", "e2", "co-acme", "s-bridge", MON, 9, revision=3, cost_code_id="cc-concrete")]
    )

    async def bridge_cell() -> dict[str, Any]:
        return await world.cell("manpower", "s-bridge", MON)

    await eventually(
        bridge_cell, lambda c: [r["status"] for r in c["rows"]] == ["updated"], timeout_s=10, what="the new revision"
    )
    await confirm.get_by_role("button", name=re.compile(r"^Force publish 1 entry")).click()
    fresh = page.get_by_role("dialog", name=re.compile("Force publish"))
    await expect(fresh.locator(".toast", has_text="changed since you reviewed them")).to_be_visible()
    await expect(fresh).to_contain_text("8.50")
    await check_screen(page, "13a-force-publish-reviewed-again")
    assert (await world.records("manpower_logs"))[0]["num_workers"] == 5, "refused: nothing written"
    await fresh.get_by_role("button", name=re.compile(r"^Force publish 1 entry")).click()
    await expect(details.locator("tbody tr.s-published")).to_have_count(1, timeout=10000)

    async def forced() -> dict[str, object]:
        (log,) = await world.records("manpower_logs")
        return log

    log = await eventually(forced, lambda r: r["num_workers"] == 2, timeout_s=10, what="Procore overwritten")
    assert Decimal(str(log["num_hours"])) == Decimal("8.5")
    assert await still_same_document(page)
