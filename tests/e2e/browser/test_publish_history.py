"""An entry's publish history in Chromium: publish a cell, open the History of its row in the details, and see
the publish request and Procore's answer recorded in one trace — the trace id shortened, in full in its name and
title, a link to the trace viewer (the gateway's TRACE_URL_TEMPLATE) opening in a new tab, and copyable."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, Route, expect

from tests.e2e.browser.conftest import TRACE_URL_TEMPLATE, check_screen, sign_in
from tests.e2e.browser.world import ACCOUNT, WEEK, World, timelog

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

NEXT_WEEK = WEEK + timedelta(days=7)
TUE = NEXT_WEEK + timedelta(days=1)
"""A day no other browser test looks at: this test's entry is its own."""


async def test_history_shows_each_step_with_its_trace(page: Page, context: BrowserContext, world: World) -> None:
    await world.timelogs(
        [
            timelog("tl-h1", "e1", "co-bolt", "s-bridge", TUE, 8, cost_code_id="cc-concrete", crew_tag="Deck crew"),
            timelog("tl-h2", "e3", "co-bolt", "s-bridge", TUE, 8, cost_code_id="cc-concrete", crew_tag="Deck crew"),
        ]
    )
    await sign_in(page, world, ACCOUNT, f"manpower?week={NEXT_WEEK}")
    cell = page.locator(f'td.cell[data-site="s-bridge"][data-date="{TUE}"]')
    await expect(cell.locator(".badge.s-todo")).to_be_visible(timeout=30000)
    where = f"Harbor Bridge, {TUE:%A}, {TUE:%B} {TUE.day}, {TUE.year}"
    await cell.get_by_role("button", name=f"Publish: {where}", exact=True).click()
    await expect(cell.locator(".badge.s-published")).to_be_visible(timeout=15000)

    # The details row's History sits beside its actions; keyboard: focus it, Enter opens, focus lands inside.
    await cell.locator("a.cell-open").click()
    details = page.get_by_role("dialog", name="Harbor Bridge")
    row = details.locator("tbody tr.s-published")
    await expect(row).to_have_count(1)
    entry_id = await row.get_attribute("data-entry")
    opener = row.get_by_role("button", name="History: Bolt Electric")
    await expect(opener).to_have_attribute("aria-haspopup", "dialog")
    await opener.focus()
    await page.keyboard.press("Enter")
    history = page.get_by_role("dialog", name=re.compile(r"^Publish history: Bolt Electric, Harbor Bridge"))
    await expect(history).to_be_visible()
    await expect(history.get_by_role("button", name="Close")).to_be_focused()

    # The help article's words: the request (Publish, by the signed-in user, on the way) and Procore's answer.
    headers = [await h.inner_text() for h in await history.locator("thead th").all()]
    assert headers == ["When", "Action", "Who", "Outcome", "Message", "Trace"], headers
    request = history.locator('tbody tr[data-action="publish"]')
    answer = history.locator('tbody tr[data-action="result"]')
    await expect(request).to_have_count(1)
    await expect(answer).to_have_count(1)
    await expect(request.locator(".h-action")).to_have_text("Publish")
    await expect(request.locator(".h-requested_by")).to_have_text("office")
    await expect(request.locator(".h-outcome")).to_have_text("On the way to Procore")
    await expect(request.locator(".h-message")).to_have_text("Creates the record in Procore")
    await expect(answer.locator(".h-action")).to_have_text("Procore answered")
    await expect(answer.locator(".h-outcome")).to_have_text("Published")

    # One trace: the same id on both steps, as the API gives it; shortened on screen, in full in the name.
    async with httpx.AsyncClient(base_url=world.gateway, timeout=10) as gw:
        detail = (await gw.get(f"/api/entries/{entry_id}", headers=world.headers)).json()
    steps = {step["action"]: step for step in detail["history"]}
    trace_id = steps["publish"]["trace_id"]
    assert trace_id
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
    assert steps["result"]["trace_id"] == trace_id
    expected_href = TRACE_URL_TEMPLATE.replace("{trace_id}", trace_id)
    for step in (request, answer):
        link = step.get_by_role("link", name=f"Trace {trace_id} (opens in a new tab)")
        await expect(link).to_have_attribute("href", expected_href)
        await expect(link).to_have_attribute("target", "_blank")
        await expect(link).to_have_attribute("rel", "noopener")
        await expect(link).to_have_attribute("title", f"Trace {trace_id}")
        await expect(link).to_have_text(f"{trace_id[:8]}…")
    await check_screen(page, "40-publish-history")

    # Copyable: the Copy button puts the full id on the clipboard and says so.
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=world.gateway)
    await request.get_by_role("button", name=f"Copy Trace {trace_id}").click()
    await expect(history.locator("[role=status].copy-status")).to_have_text("Trace id copied")
    assert await page.evaluate("navigator.clipboard.readText()") == trace_id

    # Escape closes the history only; focus returns to the History button, the details stay open.
    await page.keyboard.press("Escape")
    await expect(history).to_be_hidden()
    await expect(details).to_be_visible()
    await expect(opener).to_be_focused()

    # A gateway without a trace viewer (no TRACE_URL_TEMPLATE) answers trace_url null: the same real answer with
    # that field cleared shows the id as text — shortened, in full in its title and to screen readers, copyable.
    async def without_viewer(route: Route) -> None:
        response = await route.fetch()
        body = await response.json()
        for step in body["history"]:
            step["trace_url"] = None
        await route.fulfill(response=response, json=body)

    await page.route(f"**/api/entries/{entry_id}", without_viewer)
    await page.keyboard.press("Enter")
    await expect(history).to_be_visible()
    assert await history.get_by_role("link").count() == 0
    plain = request.locator(f'.trace-id[data-trace-id="{trace_id}"]')
    await expect(plain).to_have_attribute("title", f"Trace {trace_id}")
    await expect(plain).to_contain_text(f"{trace_id[:8]}…")
    await expect(plain.locator(".sr-only")).to_have_text(f"Trace {trace_id}")
    await check_screen(page, "41-publish-history-no-viewer")
    await request.get_by_role("button", name=f"Copy Trace {trace_id}").click()
    await expect(history.locator("[role=status].copy-status")).to_have_text("Trace id copied")
    await page.unroute(f"**/api/entries/{entry_id}")

    # A live update while the history is open re-draws the details behind it: Escape still gives focus back to
    # the History button — the one now in that row, the one it was opened from being gone.
    await world.timelogs([timelog("tl-h3", "e2", "co-acme", "s-bridge", TUE, 6, cost_code_id="cc-concrete")])
    await expect(details.locator("tbody tr[data-entry]")).to_have_count(2, timeout=30000)
    await page.keyboard.press("Escape")
    await expect(history).to_be_hidden()
    await expect(details).to_be_visible()
    await expect(opener).to_be_focused()
