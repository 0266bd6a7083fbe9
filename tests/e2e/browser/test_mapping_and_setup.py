"""Data mapping and Setup in Chromium: every mapping tab reached by clicking (and by the arrow keys); a new
account's empty week says to finish Setup; Setup connects through Procore's sign-in page, chooses the company,
selects modules, warns before two-way clears manual mappings, and asks before Disconnect."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.async_api import Page, expect

from shared.events import ReferenceKind, ReferenceUpserted
from tests.e2e.browser.conftest import check_screen, sign_in
from tests.e2e.browser.world import ACCOUNT, NEW_ACCOUNT, World, finished
from tests.support.kafka import produce

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

TABS = {
    "vendor": "Vendors",
    "project": "Projects",
    "employee": "Employees",
    "classification": "Classifications",
    "cost_code": "Cost codes",
    "payroll_type": "Payroll types",
}


async def test_every_mapping_tab_by_clicking(page: Page, world: World) -> None:
    await sign_in(page, world, ACCOUNT)
    await page.get_by_role("tab", name="Data mapping").click()
    await expect(page).to_have_url(re.compile(r"#mapping\?tab="))
    tablist = page.get_by_role("tablist", name="Procore entities")
    await expect(tablist.get_by_role("tab")).to_have_count(len(TABS))
    names = await tablist.get_by_role("tab").all_inner_texts()
    assert set(names) == set(TABS.values()), names
    for entity, name in TABS.items():
        await tablist.get_by_role("tab", name=name).click()
        await expect(page).to_have_url(re.compile(rf"#mapping\?tab={entity}$"))
        await expect(tablist.get_by_role("tab", name=name)).to_have_attribute("aria-selected", "true")
        panel = page.get_by_role("tabpanel", name=name)
        await expect(panel).to_be_visible()
        await expect(panel.get_by_role("button", name="Sync")).to_be_visible()
        await expect(panel).not_to_contain_text("procore.")
        if entity == "classification":  # no pay classes came from MobiClocks: the tab says why it is empty
            await expect(panel.locator(".empty-tab")).to_be_visible()
        else:
            await expect(panel.locator("table.mapping tbody tr").first).to_be_visible()
        if entity == "vendor":
            await expect(panel.get_by_role("combobox", name=re.compile("Acme Concrete"))).to_have_value(
                str(world.seeded["vendors"][0])
            )
        await check_screen(page, f"20-mapping-{entity}")

    # The arrow keys move between the tabs too.
    await tablist.get_by_role("tab", name="Payroll types").focus()
    await page.keyboard.press("Home")
    await expect(page).to_have_url(re.compile(r"tab=vendor$"))
    await expect(tablist.get_by_role("tab", name="Vendors")).to_be_focused()
    await page.keyboard.press("ArrowRight")
    await expect(page).to_have_url(re.compile(r"tab=project$"))


async def test_setup_from_an_empty_week(page: Page, world: World) -> None:
    async with httpx.AsyncClient(base_url=world.sandbox, timeout=10) as control:
        company = (
            await control.post(
                "/_sandbox/companies",
                json={"name": "Newco Builders", "projects": [{"name": "Depot", "project_number": "N-1"}]},
            )
        ).json()
        login = "sam@newco.example"
        made = await control.post(
            "/_sandbox/users", json={"login": login, "name": "Sam New", "company_ids": [company["company_id"]]}
        )
        assert made.status_code == 201, made.text

    await sign_in(page, world, NEW_ACCOUNT)
    board = page.locator("#board")
    await expect(board).to_contain_text("No manpower entries this week.")
    await expect(board).to_contain_text("Finish Setup: Connect to Procore")
    await check_screen(page, "30-empty-week-setup-hint")
    await board.get_by_role("link", name="Open Setup").click()
    await expect(page.get_by_role("tab", name="Setup")).to_have_attribute("aria-selected", "true")
    await expect(page.locator(".conn")).to_have_text("Not connected")
    await check_screen(page, "31-setup-not-connected")

    # Connect: Procore's sign-in page (the sandbox's), then back to Setup.
    await page.get_by_role("button", name="Connect with Procore").click()
    await page.wait_for_url(re.compile(r"/oauth/authorize"))
    await page.get_by_role("button", name=re.compile(f"Continue as Sam New \\({re.escape(login)}\\)")).click()
    await page.wait_for_url(re.compile(r"/#setup"))
    await expect(page.locator(".conn")).to_have_text("Connected", timeout=20000)
    await expect(page.locator(".toast").first).not_to_contain_text("authorization_code")

    await page.get_by_label("Procore company").select_option(label="Newco Builders")
    await page.get_by_label("Timecard", exact=True).check()
    await page.get_by_role("button", name="Save setup").click()
    await expect(page.locator(".toast.ok", has_text="Setup").first).to_be_visible()
    # The saved setup reaches the dashboard's read model (the aggregator's copy) a moment later.
    await expect(page.locator(".setup-hint")).to_be_hidden(timeout=30000)
    await check_screen(page, "32-setup-connected")

    # A manual mapping made before the first Sync reads as mapped (never "Not mapped"), then Sync names it.
    await produce(
        world.kafka,
        world.topics.reference,
        [ReferenceUpserted(account_id=NEW_ACCOUNT, kind=ReferenceKind.JOB_SITE, entity_id="site-1", name="Depot yard")],
        key=NEW_ACCOUNT.encode(),
    )
    async with httpx.AsyncClient(base_url=world.gateway, timeout=10) as gw:
        token = await page.evaluate("localStorage.getItem('gateway.token')")
        headers = {"Authorization": f"Bearer {token}"}
        depot = {"procore_id": company["projects"][0]["id"]}
        await finished(gw, headers, await gw.put("/api/mappings/project/site-1", json=depot, headers=headers))
    await page.get_by_role("tab", name="Data mapping").click()
    await page.get_by_role("tab", name="Projects").click()
    panel = page.get_by_role("tabpanel", name="Projects")
    choice = panel.get_by_role("combobox", name=re.compile("Depot yard"))
    await expect(choice.locator("option:checked")).not_to_have_text("Not mapped")
    await expect(panel).to_contain_text("Manual")
    await check_screen(page, "36-mapping-before-sync")
    await panel.get_by_role("button", name="Sync").click()
    await expect(page.locator(".toast.ok", has_text="Sync").first).to_be_visible()
    await expect(choice.locator("option:checked")).to_have_text("N-1 · Depot")

    # Two-way: a warning says it clears the manual mapping, and Cancel keeps everything as it was.
    await page.get_by_role("tab", name="Setup").click()
    await expect(page.locator("#two-way-note")).to_contain_text("clears your 1 manual mapping")
    await page.get_by_label("Two-way integration").check()
    await page.get_by_role("button", name="Save setup").click()
    warning = page.get_by_role("dialog", name="Turn on Two-way integration?")
    await expect(warning).to_contain_text("1 manual mapping")
    await check_screen(page, "33-two-way-warning")
    await warning.get_by_role("button", name="Cancel").click()
    async with httpx.AsyncClient(base_url=world.gateway, timeout=10) as gw:
        assert (await gw.get("/api/setup", headers=headers)).json()["two_way"] is False

    # Disconnect asks first; Cancel keeps the connection.
    await page.get_by_role("button", name="Disconnect").click()
    ask = page.get_by_role("dialog", name="Disconnect from Procore?")
    await expect(ask).to_be_visible()
    await check_screen(page, "34-disconnect-confirmation")
    await ask.get_by_role("button", name="Cancel").click()
    await expect(page.locator(".conn")).to_have_text("Connected")
    await page.get_by_role("button", name="Disconnect").click()
    await page.get_by_role("dialog", name="Disconnect from Procore?").get_by_role("button", name="Disconnect").click()
    await expect(page.locator(".conn")).not_to_have_text("Connected", timeout=20000)
    await check_screen(page, "35-setup-disconnected")


async def test_without_the_permission_the_article_names_it(page: Page, world: World) -> None:
    await page.goto(f"{world.gateway}/dev/login?account_id={ACCOUNT}&user_id=crew-lead&permission=procore.publish")
    await expect(page.locator("#who")).to_contain_text("crew-lead")
    await page.get_by_role("tab", name="Data mapping").click()
    hint = page.locator("#admin .hint")
    await expect(hint).to_contain_text("Procore Connect data mapping permission")
    await expect(hint).to_contain_text("Administration > Role Permissions > Procore")
    await expect(hint).not_to_contain_text("procore.mapping")
    await check_screen(page, "40-mapping-without-permission")
