// Setup: the Procore connection (a Procore user's consent, or the company's own service account), the Procore
// company, Select Procore Modules and the Two-way integration option. Disconnect, Unbind and turning two-way
// on (it clears the manual mappings) each ask first.

import { $, api, awaitCommand, can, confirmDialog, el, fmt, handleError, label, permissionHint, state, steps, toast } from "/static/core.js";

const PERMISSION = "procore.setup";
let box = null;

async function command(method, path, body, what, settled = null) {
  let done = false;
  try {
    const outcome = await awaitCommand(await api(path, { method, body: body ? JSON.stringify(body) : undefined }), what);
    done = Boolean(outcome && outcome.status === "done");
  } catch (error) {
    handleError(error);
  }
  await refreshSetupState();
  await render();
  if (done && settled) settle(settled);
  return done;
}

/** GET /api/setup reads the setup the "Setup saved" outcome committed, and every later change of it arrives as a
 * live `mapping` event (what: "setups", see onEvent). Only while the live stream is down does the screen look again
 * itself (in the background, for up to 30 s) until what it shows matches what was saved. */
function liveOpen() {
  return document.body.dataset.live === "open";
}

async function settle(check) {
  const deadline = Date.now() + 30000;
  while (!liveOpen() && Date.now() < deadline && !(state.setup && check(state.setup))) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    await refreshSetupState();
    showMissing();
  }
}

function showMissing() {
  const shown = document.getElementById("setup-missing");
  if (shown && box && !box.hidden) shown.replaceWith(missingHint());
}

export async function refreshSetupState() {
  try {
    state.setup = await api("/api/setup");
  } catch (error) {
    state.setup = null;
  }
  window.dispatchEvent(new CustomEvent("setup-changed"));
}

function connectionCard(connection) {
  const connect = async () => {
    try {
      const { authorize_url } = await api("/api/procore/authorize");
      location.href = authorize_url;
    } catch (error) {
      handleError(error);
    }
  };
  const clientId = el("input", { id: "sa-client-id", autocomplete: "off" });
  const clientSecret = el("input", { id: "sa-client-secret", type: "password", autocomplete: "off" });
  const saCompany = el("input", { id: "sa-company-id", inputmode: "numeric", pattern: "[0-9]*", autocomplete: "off", "aria-describedby": "sa-company-hint" });
  const serviceAccount = el(
    "form",
    {
      class: "stack",
      hidden: true,
      onsubmit: (e) => {
        e.preventDefault();
        const body = { grant: "client_credentials", client_id: clientId.value, client_secret: clientSecret.value };
        if (saCompany.value.trim()) body.procore_company_id = Number(saCompany.value.trim());
        command("POST", "/api/procore/connection", body, "Service account");
      },
    },
    el("div", { class: "row" }, el("label", { for: "sa-client-id" }, "Client ID"), clientId),
    el("div", { class: "row" }, el("label", { for: "sa-client-secret" }, "Client secret"), clientSecret),
    el("div", { class: "row" }, el("label", { for: "sa-company-id" }, "Company ID in Procore"), saCompany),
    el("p", { class: "hint", id: "sa-company-hint" }, "The company your service account was created in (Procore asks service accounts to name it)."),
    el("div", { class: "row" }, el("button", { class: "primary", type: "submit" }, "Connect the service account")),
  );
  const disconnect = async () => {
    const ok = await confirmDialog(
      "Disconnect from Procore?",
      "Publishing to Procore stops until you connect again. The Procore companies stay with this account, and your mappings are kept.",
      "Disconnect",
    );
    if (ok) command("DELETE", "/api/procore/connection", null, "Disconnect");
  };
  const unbind = async (company) => {
    const ok = await confirmDialog(
      `Unbind ${company.name}?`,
      `This account stops using ${company.name}: its setup and mappings are cleared, and another MobiClocks account may connect it.`,
      "Unbind",
    );
    if (ok) command("DELETE", `/api/procore/companies/${company.procore_company_id}`, null, `Unbind ${company.name}`);
  };
  const method = connection.grant ? label("connection_methods", connection.grant) : null;
  return el(
    "section",
    { class: "card", "aria-labelledby": "connection-title" },
    el("h2", { id: "connection-title" }, "Procore connection"),
    el("p", { class: "hint" }, "MobiClocks publishes to Procore with this connection. A Procore user of your company approves it, or you use your company's own Procore service account."),
    el(
      "div",
      { class: "row" },
      el("span", { class: `conn ${connection.status}` }, label("connection_statuses", connection.status)),
      method ? el("span", { class: "muted" }, `by ${method}`) : null,
      connection.connected_at ? el("span", { class: "muted" }, `since ${fmt.stamp.format(new Date(connection.connected_at))}`) : null,
    ),
    connection.message ? el("p", { class: "broken" }, connection.message) : null,
    connection.status === "connected" && connection.procore_company_id
      ? el(
          "p",
          { class: "hint" },
          connection.webhooks
            ? `Edits made in Procore show on entries as they happen (Procore webhooks${connection.webhooks.last_delivery_at ? `, last ${fmt.stamp.format(new Date(connection.webhooks.last_delivery_at))}` : ""}).`
            : "Edits made in Procore show on an entry when it is next published (Procore webhooks are not registered for this company).",
        )
      : null,
    el(
      "div",
      { class: "row" },
      el("button", { type: "button", class: "primary", onclick: connect }, connection.status === "connected" ? "Reconnect with Procore" : "Connect with Procore"),
      el("button", { type: "button", class: "ghost", "aria-expanded": "false", onclick: (e) => { serviceAccount.hidden = !serviceAccount.hidden; e.target.setAttribute("aria-expanded", String(!serviceAccount.hidden)); } }, "Use a service account"),
      connection.status === "connected" ? el("button", { type: "button", class: "ghost danger-text", onclick: disconnect }, "Disconnect") : null,
    ),
    serviceAccount,
    connection.companies.length
      ? el(
          "ul",
          { class: "companies", "aria-label": "Connected Procore companies" },
          connection.companies.map((c) => el("li", {}, el("b", {}, c.name), " ", el("button", { type: "button", class: "ghost mini", onclick: () => unbind(c) }, `Unbind ${c.name}`))),
        )
      : null,
  );
}

function setupCard(connection) {
  const company = el(
    "select",
    { id: "setup-company" },
    el("option", { value: "" }, connection.companies.length ? "Choose the Procore company" : "Connect to Procore first"),
    connection.companies.map((c) => el("option", { value: c.procore_company_id, selected: c.procore_company_id === connection.procore_company_id }, c.name)),
  );
  const modules = Object.entries(state.labels.modules).map(([value, name]) => {
    const id = `module-${value}`;
    return el("label", { class: "check", for: id }, el("input", { type: "checkbox", id, value, checked: connection.enabled_modules.includes(value) }), name);
  });
  const twoWay = el("input", { type: "checkbox", id: "two-way", checked: connection.two_way, "aria-describedby": "two-way-note" });
  // Auto-publish (opt-in per module): To do and Updated entries are published N minutes after they last changed.
  const savedAuto = (state.setup && state.setup.auto_publish) || {};
  const autoPublish = Object.entries(state.labels.modules).map(([value, name]) => {
    const on = el("input", { type: "checkbox", id: `auto-${value}`, value, checked: value in savedAuto });
    const minutes = el("input", { type: "number", id: `auto-minutes-${value}`, min: "0", max: "10080", step: "1", value: String(savedAuto[value] ?? 60), "aria-label": `${name}: minutes after the last change` });
    return { value, on, minutes, row: el("div", { class: "row" }, el("label", { class: "check", for: `auto-${value}` }, on, `Auto-publish ${name}`), minutes, el("span", { class: "muted" }, "minutes after an entry last changed")) };
  });
  const manual = (state.setup && state.setup.manual_mappings) || 0;
  const note = el(
    "p",
    { class: "hint", id: "two-way-note" },
    "With Two-way integration, mappings come automatically from the Procore links in MobiClocks and there is no Data mapping to do.",
    manual ? el("strong", {}, ` Turning it on clears your ${manual} manual ${manual === 1 ? "mapping" : "mappings"}.`) : null,
  );
  const save = async () => {
    if (twoWay.checked && !connection.two_way && manual > 0) {
      const ok = await confirmDialog(
        "Turn on Two-way integration?",
        `Two-way integration replaces your ${manual} manual ${manual === 1 ? "mapping" : "mappings"} with the Procore links kept in MobiClocks. The manual mappings are cleared and cannot be restored.`,
        `Clear ${manual} manual ${manual === 1 ? "mapping" : "mappings"} and turn on`,
      );
      if (!ok) return;
    }
    const body = {
      procore_company_id: company.value ? Number(company.value) : null,
      enabled_modules: modules.map((m) => m.querySelector("input")).filter((i) => i.checked).map((i) => i.value),
      two_way: twoWay.checked,
      auto_publish: Object.fromEntries(autoPublish.filter((a) => a.on.checked).map((a) => [a.value, Math.max(0, Math.round(Number(a.minutes.value) || 0))])),
    };
    const sameAuto = (a, b) => Object.keys(a).length === Object.keys(b).length && Object.entries(a).every(([m, n]) => b[m] === n);
    const same = (a, b) => a.length === b.length && a.every((m) => b.includes(m));
    command("PUT", "/api/setup", body, "Setup", (saved) =>
      saved.procore_company_id === body.procore_company_id && saved.two_way === body.two_way && same(saved.enabled_modules, body.enabled_modules) && sameAuto(saved.auto_publish || {}, body.auto_publish),
    );
  };
  return el(
    "section",
    { class: "card", "aria-labelledby": "setup-title" },
    el("h2", { id: "setup-title" }, "Select Procore Modules"),
    el("p", { class: "hint" }, "Activate what you publish to Procore. Each module adds the Data mapping tabs it needs."),
    el("div", { class: "row" }, el("label", { for: "setup-company" }, "Procore company"), company),
    el("fieldset", { class: "row" }, el("legend", {}, "Procore modules"), modules),
    el("div", { class: "row" }, el("label", { class: "check", for: "two-way" }, twoWay, "Two-way integration")),
    note,
    el(
      "fieldset",
      { id: "auto-publish" },
      el("legend", {}, "Auto-publish (optional)"),
      el("p", { class: "hint" }, "Publishes To do and Updated entries automatically, shown as system:auto-publish in each entry's history. Never Force publish: failures and conflicts wait for you."),
      autoPublish.map((a) => a.row),
    ),
    el("div", { class: "row" }, el("button", { type: "button", class: "primary", onclick: save }, "Save setup")),
  );
}

function missingHint() {
  const missing = (state.setup && state.setup.missing) || [];
  const hint = el("p", { class: "setup-hint", id: "setup-missing", role: "status" }, `To finish Setup: ${steps(missing)}.`);
  hint.hidden = !missing.length;
  return hint;
}

/** A live `mapping` event (setup saved, connection changed): the list of what is missing follows. */
export async function onEvent(kind, data) {
  if (kind !== "mapping" || !data || !["setups", "connections", "command_outcomes"].includes(data.what)) return;
  await refreshSetupState();
  showMissing();
}

async function render() {
  if (!can(PERMISSION)) {
    box.replaceChildren(el("div", { class: "card" }, el("h2", {}, "Setup"), el("p", { class: "hint" }, permissionHint(PERMISSION))));
    return;
  }
  let connection;
  try {
    connection = await api("/api/procore/connection");
  } catch (error) {
    handleError(error);
    return;
  }
  const missing = (state.setup && state.setup.missing) || [];
  box.replaceChildren(
    missingHint(),
    connectionCard(connection),
    setupCard(connection),
  );
}

export async function show(params) {
  box = $("admin");
  box.hidden = false;
  if (params.get("connect_error")) toast(`Procore connection: ${params.get("connect_error")}`, "error", 10000);
  history.replaceState(null, "", "#setup");
  await refreshSetupState();
  await render();
  if (params.get("connect_command")) {
    await awaitCommand({ command_id: params.get("connect_command") }, "Procore connection");
    await refreshSetupState();
    render();
  }
}
