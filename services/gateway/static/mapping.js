// Data mapping: one tab per Procore entity the enabled modules need (Vendors, Projects, Employees,
// Classifications, Cost codes, Payroll types), each with Sync, Auto-map and manual mapping. The tab, the
// project (cost codes) and the row to show come from the URL (#mapping?tab=cost_code&project=…&row=…), so
// a Non publishable reason links straight to the row that fixes it.

import { $, api, awaitCommand, can, el, fmt, handleError, href, keyboardTabs, label, navigate, permissionHint, route, selectTab } from "/static/core.js";

const PERMISSION = "procore.mapping";
const view = { overview: null, params: null, box: null };

function needsPermission(box) {
  box.replaceChildren(el("div", { class: "card" }, el("h2", {}, "Data mapping"), el("p", { class: "hint" }, permissionHint(PERMISSION))));
}

function sourceText(source) {
  return label("mapping_sources", source);
}

/** The Procore choice of a row; a mapped row whose Procore item is not in the synced list keeps its name. */
function rowSelect(row, data, onchange, rowLabel) {
  const options = data.procore_options.map((o) =>
    el("option", { value: o.procore_id, selected: o.procore_id === row.procore_id && !row.broken_reason }, o.number ? `${o.number} · ${o.name}` : o.name),
  );
  const known = data.procore_options.some((o) => o.procore_id === row.procore_id);
  if (row.procore_id && !known && !row.broken_reason) {
    options.unshift(el("option", { value: row.procore_id, selected: true }, row.procore_name || "Mapped (sync to see the name)"));
  }
  return el(
    "select",
    { disabled: data.two_way || !can(PERMISSION), onchange: (e) => onchange(e.target.value), "aria-label": rowLabel, "data-row": row.mobiclocks_id },
    el("option", { value: "" }, "Not mapped"),
    options,
  );
}

async function runCommand(path, body, what) {
  try {
    await awaitCommand(await api(path, { method: "POST", body: JSON.stringify(body || {}) }), what);
  } catch (error) {
    handleError(error);
  }
  reload();
}

function emptyText(tab, data, overview) {
  if (data.message) return data.message;
  if (tab.needs_project && !overview.mapped_projects.length) {
    return `Since cost codes and classifications are dependent on projects, map at least one project first; then the ${tab.mobiclocks_label.toLowerCase()} of the mapped projects show here.`;
  }
  return `No ${tab.mobiclocks_label.toLowerCase()} rows yet: MobiClocks has sent none for this account. Once it does, they show here to be mapped.`;
}

async function renderTab(panel, overview, entity, params) {
  const projectScoped = overview.tabs.find((t) => t.entity === entity)?.needs_project;
  const project = params.get("project");
  const query = projectScoped && project ? `?procore_project_id=${encodeURIComponent(project)}` : "";
  let data;
  try {
    data = await api(`/api/mapping/${entity}${query}`);
  } catch (error) {
    handleError(error);
    return;
  }
  const tab = data.tab;
  const name = label("entities", tab.entity);
  const overwrite = el("input", { type: "checkbox", id: "overwrite-manual" });
  const actions = el(
    "div",
    { class: "row" },
    el("button", { type: "button", class: "primary", disabled: !can(PERMISSION), onclick: () => runCommand(`/api/mapping/${tab.entity}/sync`, null, `Sync ${name}`) }, "Sync"),
    tab.auto_map && !data.two_way
      ? [
          el("button", { type: "button", class: "ghost", disabled: !can(PERMISSION), onclick: () => runCommand(`/api/mapping/${tab.entity}/auto-map`, { overwrite_manual: overwrite.checked }, `Auto-map ${name}`) }, "Auto-map"),
          el("label", { class: "check", for: "overwrite-manual" }, overwrite, "Also replace manual mappings"),
        ]
      : !data.two_way
        ? el("span", { class: "muted" }, "Auto-map needs a Number field: map these rows manually.")
        : null,
    projectScoped && overview.mapped_projects.length
      ? [
          el("label", { for: "mapping-project" }, "Procore project"),
          el(
            "select",
            { id: "mapping-project", onchange: (e) => navigate("mapping", { tab: entity, project: e.target.value }) },
            overview.mapped_projects.map((p) => el("option", { value: p.procore_project_id, selected: p.procore_project_id === data.procore_project_id }, p.name)),
          ),
        ]
      : null,
  );
  const info = el(
    "p",
    { class: "hint" },
    `${tab.mobiclocks_label} ↔ Procore ${name.toLowerCase()}. `,
    tab.many_to_one ? "Several rows may map to one Procore item. " : "Each Procore item maps to one row. ",
    data.last_sync ? `Last sync ${fmt.stamp.format(new Date(data.last_sync.synced_at))}: ${data.last_sync.total} in Procore.` : data.message ? "" : "Not synced yet: select Sync to load the list from Procore.",
  );
  const report = data.last_auto_map
    ? el("p", { class: "report" }, "Last auto-map: ", el("b", {}, `${data.last_auto_map.mapped} mapped`), " · ", el("b", {}, `${data.last_auto_map.skipped} skipped`), " · ", el("b", {}, `${data.last_auto_map.ambiguous} ambiguous`))
    : null;
  if (!data.rows.length) {
    panel.replaceChildren(info, actions, el("p", { class: "hint empty-tab" }, emptyText(tab, data, overview)));
    return;
  }
  const setMapping = async (row, value) => {
    const body = { procore_id: value ? Number(value) : null };
    if (projectScoped) body.procore_project_id = data.procore_project_id;
    try {
      const accepted = await api(`/api/mappings/${tab.entity}/${encodeURIComponent(row.mobiclocks_id)}`, { method: "PUT", body: JSON.stringify(body) });
      await awaitCommand(accepted, ""); // the outcome names the row and the Procore item
    } catch (error) {
      handleError(error);
    }
    reload();
  };
  const wanted = params.get("row");
  const rows = data.rows.map((row) =>
    el(
      "tr",
      { class: row.mobiclocks_id === wanted ? "wanted" : "", id: `row-${row.mobiclocks_id}` },
      el("th", { scope: "row" }, row.name),
      el("td", { class: "muted" }, row.number || "—"),
      el("td", {}, rowSelect(row, data, (value) => setMapping(row, value), `Procore ${label("entity_singular", tab.entity)} for ${row.name}`), row.broken_reason ? el("div", { class: "broken" }, row.broken_reason) : null, row.warning ? el("div", { class: "broken", role: "note" }, row.warning) : null),
      el("td", { class: "source" }, row.source && !row.broken_reason ? sourceText(row.source) : ""),
    ),
  );
  panel.replaceChildren(
    info,
    actions,
    report || "",
    data.message ? el("p", { class: "hint" }, data.message) : "",
    el(
      "table",
      { class: "mapping" },
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, tab.mobiclocks_label), el("th", { scope: "col" }, "Number"), el("th", { scope: "col" }, `Procore ${label("entity_singular", tab.entity)}`), el("th", { scope: "col" }, "Mapped by"))),
      el("tbody", {}, rows),
    ),
  );
  const target = wanted && panel.querySelector(`tr.wanted select`);
  if (target) {
    target.scrollIntoView({ block: "center" });
    target.focus();
  }
}

async function render(box, params) {
  view.box = box;
  view.params = params;
  if (!can(PERMISSION)) return needsPermission(box);
  let overview;
  try {
    overview = await api("/api/mapping");
  } catch (error) {
    handleError(error);
    return;
  }
  view.overview = overview;
  if (overview.message || !overview.tabs.length) {
    box.replaceChildren(el("div", { class: "card" }, el("h2", {}, "Data mapping"), el("p", { class: "hint" }, overview.message || "Select Procore modules in Setup first: each module adds the tabs it needs."), el("a", { href: "#setup" }, "Open Setup")));
    return;
  }
  let entity = params.get("tab");
  if (!overview.tabs.some((t) => t.entity === entity)) {
    entity = overview.tabs[0].entity;
    navigate("mapping", { tab: entity }, true);
    return;
  }
  const list = el(
    "div",
    { class: "subtabs", role: "tablist", "aria-label": "Procore entities" },
    overview.tabs.map((t) =>
      el(
        "a",
        {
          role: "tab",
          id: `tab-${t.entity}`,
          href: href("mapping", { tab: t.entity }),
          "aria-controls": "mapping-panel",
          "data-entity": t.entity,
        },
        label("entities", t.entity),
      ),
    ),
  );
  const selected = list.querySelector(`[data-entity="${entity}"]`);
  selectTab(list, selected);
  keyboardTabs(list, (tab) => navigate("mapping", { tab: tab.dataset.entity }));
  const panel = el("div", { role: "tabpanel", id: "mapping-panel", "aria-labelledby": `tab-${entity}`, tabindex: "0" });
  const hadFocus = box.contains(document.activeElement) && document.activeElement.getAttribute("role") === "tab";
  box.replaceChildren(el("div", { class: "card" }, el("h2", {}, "Data mapping"), list, panel));
  if (hadFocus) selected.focus();
  await renderTab(panel, overview, entity, params);
}

function reload() {
  if (view.box && view.params) render(view.box, view.params);
}

export function show(params) {
  $("admin").hidden = false;
  render($("admin"), params);
}

/** A live `mapping` event (another user, two-way links) redraws the tab. */
export function onEvent(kind) {
  if (kind === "mapping" && view.box && !$("admin").hidden && route().screen === "mapping") {
    if (!view.box.contains(document.activeElement) || document.activeElement.tagName !== "SELECT") reload();
  }
}
