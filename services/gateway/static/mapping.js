// Setup (Procore connection, company, modules, two-way) and Data mapping (per-tab sync, auto-map, manual
// mapping). Uses the helpers of app.js ($, el, api, toast, handleError, can). Commands answer 202 with a
// command id; the outcome (done, rejected with the reason, failed with Procore's message) is polled.
"use strict";

const MODULE_LABEL = { manpower: "Manpower", timecard: "Timecard", production_quantity: "Production quantity" };
const SOURCE_LABEL = { manual: "manual", auto: "auto-map", two_way: "two-way link" };
const mapping = { tab: null, project: null };

async function awaitCommand(accepted, what) {
  const deadline = Date.now() + 60000;
  while (Date.now() < deadline) {
    const outcome = await api(`/api/commands/${accepted.command_id}`);
    if (outcome.status !== "pending") {
      const kind = outcome.status === "done" ? "ok" : "error";
      toast(`${what}: ${outcome.message || outcome.status}`, kind);
      return outcome;
    }
    await new Promise((resolve) => setTimeout(resolve, 400));
  }
  toast(`${what}: still running — refresh later`, "info");
  return null;
}

function needs(permission, label, box) {
  if (can(permission)) return true;
  box.replaceChildren(
    el("div", { class: "card" }, el("h2", {}, label), el("p", { class: "hint" }, `This needs the ${permission} permission.`)),
  );
  return false;
}

// --- Setup -----------------------------------------------------------------------------

async function renderSetup(box) {
  if (!needs("procore.setup", "Setup", box)) return;
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  history.replaceState(null, "", "#setup");
  if (params.get("connect_error")) toast(`Procore connection: ${params.get("connect_error")}`, "error");
  let connection;
  try {
    connection = await api("/api/procore/connection");
  } catch (error) {
    handleError(error);
    return;
  }
  const statusText = {
    not_connected: "Not connected",
    connected: "Connected",
    needs_reauthorization: "Needs to be connected again",
    disconnected: "Disconnected",
  }[connection.status];
  const connect = async () => {
    try {
      const { authorize_url } = await api("/api/procore/authorize");
      location.href = authorize_url;
    } catch (error) {
      handleError(error);
    }
  };
  const command = (method, body, what, path = "/api/procore/connection") => async () => {
    try {
      await awaitCommand(await api(path, { method, body: body && JSON.stringify(body) }), what);
      renderSetup(box);
    } catch (error) {
      handleError(error);
    }
  };
  // The customer's own service account (created in its Procore company): never the app's shared credentials.
  const clientId = el("input", { id: "sa-client-id", autocomplete: "off", placeholder: "client id" });
  const clientSecret = el("input", { id: "sa-client-secret", type: "password", autocomplete: "off", placeholder: "client secret" });
  const serviceAccount = el(
    "form",
    {
      class: "row",
      hidden: true,
      onsubmit: (e) => {
        e.preventDefault();
        command("POST", { grant: "client_credentials", client_id: clientId.value, client_secret: clientSecret.value }, "Service account")();
      },
    },
    el("label", { for: "sa-client-id" }, "Your company's service account"),
    clientId,
    clientSecret,
    el("button", { class: "primary" }, "Connect"),
  );
  const disconnect = () => {
    if (confirm("Disconnect from Procore? The tokens are revoked; the companies stay connected to this account (unbind one below to release it).")) {
      command("DELETE", null, "Disconnect")();
    }
  };
  const connectionCard = el(
    "div",
    { class: "card" },
    el("h2", {}, "Procore connection"),
    el("p", { class: "hint" }, "MobiClocks publishes with the tokens of this connection; they are stored encrypted. A Procore company is connected to the account that proves it controls it: a Procore user of that company consents, or its own service account is used."),
    el(
      "div",
      { class: "row" },
      el("span", { class: `conn ${connection.status}` }, statusText),
      connection.grant ? el("span", { class: "muted" }, connection.grant === "authorization_code" ? "OAuth (a Procore user's consent)" : "your service account") : null,
      connection.connected_at ? el("span", { class: "muted" }, `since ${stampFmt.format(new Date(connection.connected_at))}`) : null,
    ),
    connection.message ? el("p", { class: "broken" }, connection.message) : null,
    el(
      "div",
      { class: "row" },
      el("button", { class: "primary", onclick: connect }, connection.status === "connected" ? "Reconnect with Procore" : "Connect with Procore"),
      el("button", { class: "ghost", onclick: () => { serviceAccount.hidden = !serviceAccount.hidden; } }, "Use a service account"),
      connection.status === "connected" ? el("button", { class: "ghost", onclick: disconnect }, "Disconnect") : null,
    ),
    serviceAccount,
    connection.companies.length
      ? el(
          "ul",
          { class: "companies" },
          connection.companies.map((c) =>
            el(
              "li",
              {},
              `${c.name} `,
              el("span", { class: "muted" }, c.proof === "user_consent" ? "(a Procore user's consent)" : "(your service account)"),
              " ",
              el(
                "button",
                {
                  class: "ghost",
                  onclick: () => {
                    if (confirm(`Unbind ${c.name}? This account stops using it (its setup and mappings are cleared) and another MobiClocks account may connect it.`)) {
                      command("DELETE", null, `Unbind ${c.name}`, `/api/procore/companies/${c.procore_company_id}`)();
                    }
                  },
                },
                "Unbind",
              ),
            ),
          ),
        )
      : null,
  );

  const company = el(
    "select",
    { id: "setup-company" },
    el("option", { value: "" }, connection.companies.length ? "— choose the Procore company —" : "— connect first —"),
    connection.companies.map((c) =>
      el("option", { value: c.procore_company_id, selected: c.procore_company_id === connection.procore_company_id }, c.name),
    ),
  );
  if (connection.procore_company_id && !connection.companies.some((c) => c.procore_company_id === connection.procore_company_id)) {
    company.append(el("option", { value: connection.procore_company_id, selected: true }, `Company ${connection.procore_company_id} (not connected to this account: connect again)`));
  }
  const modules = Object.entries(MODULE_LABEL).map(([value, label]) =>
    el("label", { class: "check" }, el("input", { type: "checkbox", value, checked: connection.enabled_modules.includes(value) }), label),
  );
  const twoWay = el("input", { type: "checkbox", checked: connection.two_way });
  const save = async () => {
    const body = {
      procore_company_id: company.value ? Number(company.value) : null,
      enabled_modules: modules.map((m) => m.querySelector("input")).filter((i) => i.checked).map((i) => i.value),
      two_way: twoWay.checked,
    };
    try {
      await awaitCommand(await api("/api/setup", { method: "PUT", body: JSON.stringify(body) }), "Setup");
      renderSetup(box);
    } catch (error) {
      handleError(error);
    }
  };
  const setupCard = el(
    "div",
    { class: "card" },
    el("h2", {}, "Select Procore modules"),
    el("p", { class: "hint" }, "Each enabled module adds the Data mapping tabs it needs."),
    el("div", { class: "row" }, el("label", { for: "setup-company" }, "Procore company"), company),
    el("div", { class: "row" }, modules),
    el("div", { class: "row" }, el("label", { class: "check" }, twoWay, "Two-way integration (mappings come from Procore ids linked in MobiClocks)")),
    el("div", { class: "row" }, el("button", { class: "primary", onclick: save }, "Save setup")),
  );
  box.replaceChildren(connectionCard, setupCard);
  if (params.get("connect_command")) {
    awaitCommand({ command_id: params.get("connect_command") }, "Procore connection").then(() => renderSetup(box));
  }
}

// --- Data mapping ----------------------------------------------------------------------

async function renderMapping(box) {
  if (!needs("procore.mapping", "Data mapping", box)) return;
  let overview;
  try {
    overview = await api("/api/mapping");
  } catch (error) {
    handleError(error);
    return;
  }
  if (overview.message || !overview.tabs.length) {
    box.replaceChildren(el("div", { class: "card" }, el("h2", {}, "Data mapping"), el("p", { class: "hint" }, overview.message || "Nothing to map.")));
    return;
  }
  const wanted = new URLSearchParams(location.hash.split("?")[1] || "").get("tab");
  if (wanted) mapping.tab = wanted;
  if (!overview.tabs.some((t) => t.entity === mapping.tab)) mapping.tab = overview.tabs[0].entity;
  history.replaceState(null, "", `#mapping?tab=${mapping.tab}`);
  const tabs = el(
    "nav",
    { class: "subtabs" },
    overview.tabs.map((t) =>
      el(
        "button",
        {
          "aria-selected": String(t.entity === mapping.tab),
          onclick: () => {
            mapping.tab = t.entity;
            renderMapping(box);
          },
        },
        t.label,
      ),
    ),
  );
  const panel = el("div", {});
  box.replaceChildren(el("div", { class: "card" }, tabs, panel));
  await renderTab(panel, overview, () => renderMapping(box));
}

async function renderTab(panel, overview, again) {
  const projectScoped = mapping.tab === "cost_code";
  const query = projectScoped && mapping.project ? `?procore_project_id=${mapping.project}` : "";
  let data;
  try {
    data = await api(`/api/mapping/${mapping.tab}${query}`);
  } catch (error) {
    handleError(error);
    return;
  }
  const tab = data.tab;
  const run = (path, body, what) => async () => {
    try {
      await awaitCommand(await api(path, { method: "POST", body: JSON.stringify(body || {}) }), what);
      again();
    } catch (error) {
      handleError(error);
    }
  };
  const overwrite = el("input", { type: "checkbox" });
  const actions = el(
    "div",
    { class: "row" },
    el("button", { class: "primary", onclick: run(`/api/mapping/${tab.entity}/sync`, null, `Sync ${tab.label}`) }, "Sync"),
    tab.auto_map
      ? [
          el("button", { class: "ghost", onclick: () => run(`/api/mapping/${tab.entity}/auto-map`, { overwrite_manual: overwrite.checked }, `Auto-map ${tab.label}`)() }, "Auto-map"),
          el("label", { class: "check" }, overwrite, "also replace manual mappings"),
        ]
      : el("span", { class: "muted" }, "Auto-map needs a Number field: map these by hand."),
    projectScoped && overview.mapped_projects.length ? el("span", { class: "muted" }, "Procore project") : null,
    projectScoped && overview.mapped_projects.length
      ? el(
          "select",
          {
            onchange: (e) => {
              mapping.project = Number(e.target.value);
              again();
            },
          },
          overview.mapped_projects.map((p) => el("option", { value: p.procore_project_id, selected: p.procore_project_id === data.procore_project_id }, p.name)),
        )
      : null,
  );
  const info = el(
    "p",
    { class: "hint" },
    `${tab.mobiclocks_label} ↔ Procore ${tab.label.toLowerCase()}. `,
    tab.many_to_one ? "Several rows may map to one Procore entity. " : "One Procore entity per row (one-to-one). ",
    data.last_sync ? `Last sync ${stampFmt.format(new Date(data.last_sync.synced_at))}: ${data.last_sync.total} in Procore, ${data.last_sync.gone} gone. ` : "Not synced yet. ",
  );
  const report = data.last_auto_map
    ? el(
        "p",
        { class: "report" },
        "Last auto-map: ",
        el("b", {}, `${data.last_auto_map.mapped} mapped`),
        el("b", {}, `${data.last_auto_map.skipped} skipped`),
        el("b", {}, `${data.last_auto_map.ambiguous} ambiguous`),
      )
    : null;
  if (data.message && !data.rows.length) {
    panel.replaceChildren(info, el("p", { class: "hint" }, data.message));
    return;
  }
  const setMapping = async (row, value) => {
    const body = { procore_id: value ? Number(value) : null };
    if (projectScoped) body.procore_project_id = data.procore_project_id;
    try {
      const accepted = await api(`/api/mappings/${tab.entity}/${encodeURIComponent(row.mobiclocks_id)}`, { method: "PUT", body: JSON.stringify(body) });
      await awaitCommand(accepted, row.name);
      again();
    } catch (error) {
      handleError(error);
    }
  };
  const rows = data.rows.map((row) =>
    el(
      "tr",
      {},
      el("td", {}, row.name),
      el("td", { class: "muted" }, row.number || "—"),
      el(
        "td",
        {},
        el(
          "select",
          { disabled: data.two_way, onchange: (e) => setMapping(row, e.target.value) },
          el("option", { value: "" }, "— not mapped —"),
          data.procore_options.map((o) =>
            el("option", { value: o.procore_id, selected: o.procore_id === row.procore_id && !row.broken_reason }, o.number ? `${o.number} · ${o.name}` : o.name),
          ),
        ),
        row.broken_reason ? el("div", { class: "broken" }, row.broken_reason) : null,
      ),
      el("td", { class: "source" }, row.source && !row.broken_reason ? SOURCE_LABEL[row.source] : ""),
    ),
  );
  panel.replaceChildren(
    ...[info, actions, report, data.message ? el("p", { class: "hint" }, data.message) : null].filter(Boolean),
    el(
      "table",
      { class: "mapping" },
      el("thead", {}, el("tr", {}, el("th", {}, tab.mobiclocks_label), el("th", {}, "Number"), el("th", {}, `Procore ${tab.label.toLowerCase()}`), el("th", {}, ""))),
      el("tbody", {}, rows),
    ),
  );
}

window.AdminViews = { setup: renderSetup, mapping: renderMapping };
