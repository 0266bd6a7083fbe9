// A module's dashboard (Manpower, Timecard, Production quantity): job sites by the days of a week, the details
// of a cell, publishing, and force publishing only through a confirmation that shows what it overwrites.

import {
  $,
  ApiError,
  addDays,
  api,
  badge,
  can,
  dialog,
  el,
  fmt,
  handleError,
  href,
  iso,
  keepFocus,
  label,
  menuButton,
  mondayOf,
  navigate,
  num,
  parseDay,
  permissionHint,
  plural,
  showModal,
  state,
  steps,
  toast,
} from "/static/core.js";
import { historyButton } from "/static/history.js";

const PUBLISH = "procore.publish";
const board = { module: null, week: null, status: "", page: 0, q: "", cell: null, cells: new Map(), pending: null, drawer: null, parts: null };
/** Job sites per page of the week: what a screen shows, read and rendered at once whatever the account's size. */
const PAGE_SIZE = 50;

// --- the week grid -------------------------------------------------------------------------

function hours(value) {
  return value === null || value === undefined ? "—" : `${num(value)} h`;
}

function cellNumbers(module, cell) {
  if (module === "manpower") {
    return el(
      "span",
      { class: "numbers" },
      el("span", { class: "big" }, num(cell.manpower), el("small", {}, cell.manpower === 1 ? " person" : " people")),
      el("span", { class: "muted" }, hours(cell.total_hours)),
    );
  }
  if (module === "timecard") {
    return el("span", { class: "numbers" }, el("span", { class: "big" }, num(cell.timecards), el("small", {}, cell.timecards === 1 ? " timecard" : " timecards")));
  }
  const list = cell.quantities || [];
  const shown = list.slice(0, 3);
  return el(
    "span",
    { class: "quantities" },
    shown.map((q) => el("span", { class: "q" }, el("span", { class: "cc" }, q.cost_code), el("b", {}, `${num(q.quantity)} ${q.unit}`))),
    list.length > shown.length ? el("span", { class: "muted" }, `+${list.length - shown.length} more`) : null,
  );
}

/** One badge, or each status with its count when the cell holds more than one. */
function statusSummary(cell) {
  const counts = Object.entries(cell.counts || {}).filter(([, n]) => n > 0);
  const conflicts = cell.conflicts || 0;
  const conflict = conflicts ? el("span", { class: "badge s-conflict" }, `${conflicts} changed in Procore`) : null;
  if (counts.length <= 1) return el("span", { class: "statuses" }, badge(cell.status), conflict);
  return el(
    "span",
    { class: "statuses mixed" },
    counts.map(([status, n]) => el("span", { class: `badge s-${status}` }, el("b", {}, String(n)), ` ${label("statuses", status)}`)),
    conflict,
  );
}

function actionButton(action, onclick, extra = {}) {
  const allowed = can(PUBLISH);
  return el(
    "button",
    {
      type: "button",
      class: action === "force_publish" ? "mini warn" : action === "publish" ? "mini primary" : "mini",
      disabled: !allowed,
      title: allowed ? null : permissionHint(PUBLISH),
      onclick,
      ...extra,
    },
    label("actions", action),
  );
}

/** Force publish is offered on a cell only when something of it is in Procore already: on entries never
 * published it would do what Publish does, next to it, in red. (The details keep ⋯ → Force publish all.) */
function cellActions(cell) {
  const inProcore = ["published", "updated", "failed", "deleted"].some((s) => (cell.counts || {})[s]);
  return cell.actions.filter((a) => a !== "force_publish" || inProcore);
}

function cellScope(cell) {
  return { kind: "cell", job_site_id: cell.job_site_id, work_date: cell.work_date };
}

function renderCell(module, site, cell) {
  if (!cell) return el("td", { class: "cell empty" });
  const where = `${site.name}, ${fmt.long.format(parseDay(cell.work_date))}`;
  // The open area and the actions never overlap: the actions sit on their own line below it.
  return el(
    "td",
    { class: `cell has s-${cell.status}`, "data-date": cell.work_date, "data-site": cell.job_site_id },
    el(
      "a",
      { class: "cell-open", href: href(module, { ...gridParams(), cell: `${cell.work_date}/${cell.job_site_id}` }), "aria-label": `Open ${where}` },
      cellNumbers(module, cell),
      statusSummary(cell),
    ),
    cellActions(cell).length
      ? el(
          "div",
          { class: "cell-actions" },
          cellActions(cell).map((action) => actionButton(action, () => runAction(module, action, cellScope(cell), where), { "aria-label": `${label("actions", action)}: ${where}` })),
        )
      : null,
  );
}

function setupHint() {
  const missing = (state.setup && state.setup.missing) || [];
  if (!missing.length) return null;
  return el(
    "p",
    { class: "setup-hint" },
    `Finish Setup: ${steps(missing)}. `,
    can("procore.setup") ? el("a", { href: "#setup" }, "Open Setup") : `Ask someone with the ${label("permissions", "procore.setup")} permission to finish it.`,
  );
}

function noticeFailures(module, data) {
  // A publish that ends Failed says so, wherever the user is looking.
  const seen = new Map();
  for (const row of data.rows) {
    for (const cell of row.days) {
      if (!cell) continue;
      const key = `${module}/${cell.job_site_id}/${cell.work_date}`;
      const failed = (cell.counts && cell.counts.failed) || 0;
      seen.set(key, failed);
      const before = board.cells.get(key);
      if (before !== undefined && failed > before) {
        const where = `${row.job_site.name}, ${fmt.date.format(parseDay(cell.work_date))}`;
        const node = toast(`${plural(failed - before, "entry", "entries")} could not be published (${where}). `, "error", 10000);
        node.append(el("a", { href: href(module, { week: board.week, cell: `${cell.work_date}/${cell.job_site_id}` }) }, "See why"));
      }
    }
  }
  board.cells = seen;
}

function renderGrid(module, data) {
  const today = iso(new Date());
  noticeFailures(module, data);
  const head = el(
    "tr",
    {},
    el("th", { class: "site-head", scope: "col" }, "Job site"),
    data.days.map((d) =>
      el("th", { class: d === today ? "today" : "", scope: "col" }, el("span", { class: "dow" }, fmt.day.format(parseDay(d))), el("span", { class: "dom" }, fmt.date.format(parseDay(d)))),
    ),
  );
  const rows = data.rows.map((row) =>
    el(
      "tr",
      {},
      el(
        "th",
        { class: "site", scope: "row" },
        el("span", { class: "site-name" }, row.job_site.name),
        row.job_site.number ? el("span", { class: "site-number" }, row.job_site.number) : null,
      ),
      row.days.map((cell) => renderCell(module, row.job_site, cell)),
    ),
  );
  const grid = boardParts().body;
  renderPager(data);
  if (!rows.length) {
    const filtered = (board.status ? ` with status ${label("statuses", board.status)}` : "") + (board.q ? ` at job sites matching “${board.q}”` : "");
    grid.replaceChildren(
      el("div", { class: "empty-board" }, el("p", {}, `No ${label("modules", module).toLowerCase()} entries${filtered} this week.`), setupHint()),
    );
    return;
  }
  keepFocus(grid, () =>
    grid.replaceChildren(setupHint() || "", el("table", { class: "grid", "aria-label": `${label("modules", module)}, week of ${fmt.long.format(parseDay(board.week))}` }, el("thead", {}, head), el("tbody", {}, rows))),
  );
}

/** The compact week (cells without their job site and day, cost codes by id) as the grid's cells: each cell gets
 * its job site and day, each quantity its cost code's name. */
function expandGrid(data) {
  const names = data.cost_codes || {};
  for (const row of data.rows) {
    row.days.forEach((cell, i) => {
      if (!cell) return;
      cell.job_site_id = row.job_site.job_site_id;
      cell.work_date = data.days[i];
      if (cell.quantities) cell.quantities = cell.quantities.map(([id, unit, quantity]) => ({ cost_code_id: id, cost_code: names[id] || id, unit, quantity }));
    });
  }
  return data;
}

/** The pager above the grid (kept across re-renders, so typing in its filter keeps focus) and the grid's box. */
function boardParts() {
  const root = $("board");
  if (!board.parts || !root.contains(board.parts.pager)) {
    const find = el("input", { type: "search", class: "site-find", placeholder: "Job site name or number", "aria-label": "Find job sites" });
    let typing = null;
    find.addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(() => go({ q: find.value.trim(), page: 0 }), 250);
    });
    const prev = el("button", { type: "button", class: "mini", onclick: () => go({ page: Math.max(0, board.page - 1) }) }, "‹ Previous job sites");
    const next = el("button", { type: "button", class: "mini", onclick: () => go({ page: board.page + 1 }) }, "Next job sites ›");
    const range = el("span", { class: "site-range", "aria-live": "polite" });
    const pager = el("div", { class: "site-pager", role: "group", "aria-label": "Job sites shown", hidden: true }, find, range, prev, next);
    const body = el("div", { class: "grid-body" });
    root.replaceChildren(pager, body);
    board.parts = { pager, body, find, range, prev, next };
  }
  return board.parts;
}

/** The grid's place in the URL: week, status filter, job site filter and page (1-based, absent on the first). */
function gridParams(page = board.page, q = board.q) {
  return { week: board.week, status: board.status, q: q || undefined, page: page ? String(page + 1) : undefined };
}

function go(changes) {
  navigate(board.module, gridParams(changes.page ?? board.page, changes.q ?? board.q));
}

function renderPager(data) {
  const parts = boardParts();
  const total = data.total_rows ?? data.rows.length;
  parts.pager.hidden = total <= PAGE_SIZE && !board.q && !board.page;
  if (document.activeElement !== parts.find) parts.find.value = board.q;
  const first = total ? data.offset + 1 : 0;
  parts.range.textContent = `Job sites ${first}–${data.offset + data.rows.length} of ${total}`;
  parts.prev.disabled = board.page === 0;
  parts.next.disabled = data.offset + data.rows.length >= total;
}

async function loadGrid() {
  const module = board.module;
  const params = new URLSearchParams({ week_start: board.week, limit: String(PAGE_SIZE), offset: String(board.page * PAGE_SIZE) });
  if (board.status) params.append("status", board.status);
  if (board.q) params.append("q", board.q);
  try {
    const data = await api(`/api/modules/${module}/dashboard?${params}`);
    if (module === board.module) renderGrid(module, expandGrid(data));
  } catch (error) {
    handleError(error);
  }
}

// --- the details of a cell -----------------------------------------------------------------

function cellValue(row, key) {
  const value = row[key];
  if (key === "status") {
    return el(
      "div",
      { class: "status-cell" },
      badge(value),
      row.advice ? el("div", { class: "row-guidance" }, row.advice) : null,
      row.last_error && !row.advice ? el("div", { class: "row-error" }, row.last_error) : null,
    );
  }
  if (["total_hours", "average", "timelog_duration"].includes(key)) return hours(value);
  if (["manpower", "unit"].includes(key)) return num(value);
  if (value === null || value === undefined || value === "") return el("span", { class: "muted" }, "—");
  return String(value);
}

function reasonText(reason) {
  return typeof reason === "string" ? reason : reason.text || reason.message;
}

function fixLink(reason) {
  const fix = typeof reason === "object" && reason ? reason.fix : null;
  if (!fix) return null;
  const target = href("mapping", { tab: fix.entity, row: fix.mobiclocks_id, project: fix.project_id });
  if (!can("procore.mapping")) return el("span", { class: "muted" }, ` ${permissionHint("procore.mapping")}`);
  return el("a", { class: "fix", href: target }, `Map it in ${label("entities", fix.entity)}`);
}

function renderErrors(data) {
  const box = board.drawer.querySelector(".errors");
  if (!data.errors.length) {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  const affected = new Set(data.errors.flatMap((e) => e.entry_ids)).size;
  // Open from the start: the reasons, each with a link to the mapping row that fixes it.
  box.replaceChildren(
    el("h3", { id: "errors-title" }, `Errors: ${plural(affected, "entry is", "entries are")} ${label("statuses", "non_publishable")}`),
    el(
      "ul",
      {},
      data.errors.map((e) =>
        el("li", {}, el("span", {}, reasonText(e)), " ", el("span", { class: "muted" }, `(${plural(e.entry_ids.length, "entry", "entries")})`), " ", fixLink(e)),
      ),
    ),
  );
  box.hidden = false;
}

function renderDetails(data) {
  keepFocus(board.drawer, () => drawDetails(data));
}

function drawDetails(data) {
  const drawer = board.drawer;
  const module = data.module;
  const where = `${data.job_site.name}, ${fmt.long.format(parseDay(data.work_date))}`;
  drawer.querySelector("h2").textContent = data.job_site.name;
  drawer.querySelector(".sub").replaceChildren(`${label("modules", module)} · ${fmt.long.format(parseDay(data.work_date))} · `, statusSummary(data));
  const actions = drawer.querySelector(".drawer-actions");
  const scope = { kind: "cell", job_site_id: data.job_site.job_site_id, work_date: data.work_date };
  const publishButton = actionButton("publish", () => runAction(module, "publish", scope, where), { class: "primary" });
  publishButton.disabled = !can(PUBLISH) || !data.actions.includes("publish");
  const more = menuButton("More actions", [
    {
      label: `${label("actions", "force_publish")} all`,
      disabled: !can(PUBLISH) || !data.rows.length,
      onselect: () => runAction(module, "force_publish", scope, where),
    },
  ]);
  const close = el("button", { type: "button", class: "icon close", "aria-label": "Close details", title: "Close", onclick: () => closeCell() }, "×");
  actions.replaceChildren(publishButton, more, close);
  renderErrors(data);

  const head = el("tr", {}, data.columns.map((c) => el("th", { class: `c-${c.key}`, scope: "col" }, c.label)), el("th", { class: "c-actions", scope: "col" }, "Actions"));
  const body = data.rows.map((row) =>
    el(
      "tr",
      { class: `s-${row.status}`, "data-entry": row.entry_id },
      data.columns.map((c) => el("td", { class: `c-${c.key}` }, cellValue(row, c.key))),
      el(
        "td",
        { class: "c-actions" },
        row.actions.map((action) => actionButton(action, () => runAction(module, action, { kind: "entries", entry_ids: [row.entry_id] }, where))),
        historyButton(row.entry_id, String(row[data.columns[0].key] ?? ""), where),
      ),
    ),
  );
  drawer.querySelector("table").replaceChildren(el("thead", {}, head), el("tbody", {}, body));
}

function ensureDrawer() {
  if (board.drawer && board.drawer.isConnected) return board.drawer;
  const drawer = el(
    "dialog",
    { class: "drawer", "aria-labelledby": "drawer-title" },
    el(
      "header",
      { class: "drawer-head" },
      el("div", {}, el("h2", { id: "drawer-title" }), el("div", { class: "sub" })),
      el("div", { class: "drawer-actions" }),
    ),
    el("section", { class: "errors", "aria-labelledby": "errors-title", hidden: true }),
    el("div", { class: "table-wrap" }, el("table", { class: "details" })),
  );
  drawer.addEventListener("cancel", (e) => {
    e.preventDefault();
    closeCell();
  });
  drawer.addEventListener("click", (e) => {
    if (e.target === drawer) closeCell(); // the backdrop
  });
  document.body.append(drawer);
  board.drawer = drawer;
  return drawer;
}

async function loadCell() {
  const { jobSiteId, date } = board.cell;
  const module = board.module;
  try {
    const data = await api(`/api/modules/${module}/cells/${encodeURIComponent(jobSiteId)}/${date}`);
    if (board.cell && board.cell.jobSiteId === jobSiteId && board.cell.date === date) renderDetails(data);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      closeCell();
      toast("That cell has no entries any more.");
      return;
    }
    handleError(error);
  }
}

function openCell(jobSiteId, date) {
  const drawer = ensureDrawer();
  const same = board.cell && board.cell.jobSiteId === jobSiteId && board.cell.date === date && drawer.open;
  board.cell = { jobSiteId, date };
  if (!same) {
    drawer.querySelector("table").replaceChildren();
    drawer.querySelector(".errors").hidden = true;
    if (!drawer.open) showModal(drawer);
  }
  loadCell();
}

function closeCell() {
  navigate(board.module, gridParams());
}

function hideDrawer() {
  board.cell = null;
  if (board.drawer && board.drawer.open) board.drawer.close();
}

// --- publishing --------------------------------------------------------------------------

function valueText(value) {
  if (value === null || value === undefined || value === "") return "—";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

/** "7.50" and "7.5" are the same number: only real differences are marked. */
function sameValue(a, b) {
  const x = Number(a);
  const y = Number(b);
  return a === b || (a !== "—" && b !== "—" && !Number.isNaN(x) && !Number.isNaN(y) && x === y);
}

function previewTable(entry) {
  const fields = [...new Set([...Object.keys(entry.ours || {}), ...Object.keys(entry.procore || {})])];
  return el(
    "table",
    { class: "diff" },
    el(
      "thead",
      {},
      el("tr", {}, el("th", { scope: "col" }, "Field"), el("th", { scope: "col" }, "MobiClocks (will be written)"), el("th", { scope: "col" }, entry.procore ? "Procore now (will be overwritten)" : "Procore now")),
    ),
    el(
      "tbody",
      {},
      fields.map((f) => {
        const ours = valueText((entry.ours || {})[f]);
        const theirs = entry.procore ? valueText(entry.procore[f]) : "No record";
        const differs = Boolean(entry.procore) && !sameValue(ours, theirs);
        return el(
          "tr",
          { class: differs ? "differs" : "" },
          el("th", { scope: "row" }, label("procore_fields", f)),
          el("td", {}, ours),
          el("td", {}, theirs, differs ? el("span", { class: "sr-only" }, " (differs)") : null),
        );
      }),
    ),
  );
}

function previewBody(preview, where) {
  const entries = preview.entries;
  const changed = entries.filter((e) => e.changed_in_procore);
  return [
    el(
      "p",
      {},
      `${label("actions", "force_publish")} writes ${plural(entries.length, "entry", "entries")} of ${where} to Procore, regardless of changes made in Procore. Procore's values were read just now. `,
      changed.length
        ? el("strong", {}, `${plural(changed.length, "entry was", "entries were")} changed in Procore since published: Procore's values below will be overwritten.`)
        : "None of them was changed in Procore since it was published.",
    ),
    el(
      "ul",
      { class: "preview" },
      entries.map((e) =>
        el(
          "li",
          { class: e.changed_in_procore ? "changed" : "" },
          el(
            "div",
            { class: "preview-label" },
            el("b", {}, e.label),
            e.status ? badge(e.status) : null,
            e.changed_in_procore ? el("span", { class: "badge s-conflict" }, "Changed in Procore") : null,
            e.procore_updated_at ? el("span", { class: "muted" }, `changed ${fmt.stamp.format(new Date(e.procore_updated_at))}`) : null,
          ),
          e.effect ? el("div", { class: "muted effect" }, label("preview_effects", e.effect)) : null,
          previewTable(e),
        ),
      ),
    ),
  ];
}

/** Force publish: read Procore's current values first, show them beside ours, write only when confirmed. */
async function forcePublish(module, scope, where) {
  for (let attempt = 0; attempt < 3; attempt++) {
    let preview;
    try {
      preview = await api(`/api/modules/${module}/force-publish/preview`, { method: "POST", body: JSON.stringify({ scope }) });
    } catch (error) {
      handleError(error);
      return;
    }
    if (!preview.entries || !preview.entries.length) {
      toast(`${label("actions", "force_publish")}: nothing to send.`);
      return;
    }
    const n = preview.entries.length;
    const ok = await dialog({
      title: `${label("actions", "force_publish")}: overwrite Procore?`,
      body: previewBody(preview, where),
      wide: true,
      actions: [
        { label: "Cancel", value: null, kind: "ghost" },
        { label: `${label("actions", "force_publish")} ${plural(n, "entry", "entries")}`, value: true, kind: "danger" },
      ],
    });
    if (ok !== true) return;
    const outcome = await send(module, "force_publish", scope, { preview_id: preview.preview_id });
    if (outcome !== "stale") return;
    // The entries or Procore changed since the preview (or it expired): show a fresh one.
  }
}

async function send(module, action, scope, extra = {}) {
  try {
    const result = await api(`/api/modules/${module}/publish`, { method: "POST", body: JSON.stringify({ action, scope, ...extra }) });
    const n = result.eligible_entries;
    toast(n ? `${label("actions", action)}: ${plural(n, "entry", "entries")} on the way to Procore.` : `${label("actions", action)}: nothing to send.`, n ? "ok" : "info");
    // The live events bring the result; only while the stream is down does the page look again itself.
    if (document.body.dataset.live !== "open") setTimeout(refresh, 1500);
    return "sent";
  } catch (error) {
    if (error instanceof ApiError && error.status === 409 && action === "force_publish") {
      toast(error.message, "info", 8000);
      return "stale";
    }
    handleError(error);
    return "failed";
  }
}

function runAction(module, action, scope, where) {
  if (action === "force_publish") return forcePublish(module, scope, where);
  return send(module, action, scope);
}

// --- the screen --------------------------------------------------------------------------

export function refresh() {
  if (!board.module) return;
  loadGrid();
  if (board.cell) loadCell();
}

/** Render the dashboard of `module` from the URL parameters (week, status, cell). */
export function show(module, params) {
  const week = /^\d{4}-\d{2}-\d{2}$/.test(params.get("week") || "") ? mondayOf(parseDay(params.get("week"))) : board.week || mondayOf(new Date());
  const status = state.labels.statuses[params.get("status")] ? params.get("status") : "";
  const q = (params.get("q") || "").trim().slice(0, 100);
  const page = Math.max(0, (parseInt(params.get("page") || "1", 10) || 1) - 1);
  const changed = module !== board.module || week !== board.week || status !== board.status || q !== board.q || page !== board.page;
  if (module !== board.module) board.cells = new Map();
  Object.assign(board, { module, week, status, q, page });
  $("toolbar").hidden = false;
  $("board").hidden = false;
  $("week-picker").value = week;
  $("week-label").textContent = `${fmt.date.format(parseDay(week))} – ${fmt.date.format(parseDay(addDays(week, 6)))}`;
  $("status-filter").value = status;
  if (changed || !boardParts().body.firstChild) loadGrid();
  const cell = /^(\d{4}-\d{2}-\d{2})\/(.+)$/.exec(params.get("cell") || "");
  if (cell) openCell(cell[2], cell[1]);
  else hideDrawer();
}

export function hide() {
  hideDrawer();
  board.module = null;
  $("toolbar").hidden = true;
  $("board").hidden = true;
}

/** The toolbar (weeks, status filter) is wired once. */
export function wireToolbar() {
  const select = $("status-filter");
  select.replaceChildren(el("option", { value: "" }, "All statuses"), ...Object.entries(state.labels.statuses).map(([value, name]) => el("option", { value }, name)));
  const go = (changes) => navigate(board.module, { ...gridParams(), ...changes });
  $("prev-week").addEventListener("click", () => go({ week: addDays(board.week, -7) }));
  $("next-week").addEventListener("click", () => go({ week: addDays(board.week, 7) }));
  $("this-week").addEventListener("click", () => go({ week: mondayOf(new Date()) }));
  $("week-picker").addEventListener("change", (e) => {
    if (e.target.value) go({ week: mondayOf(parseDay(e.target.value)) });
  });
  select.addEventListener("change", (e) => go({ status: e.target.value, page: undefined }));
  $("refresh").addEventListener("click", refresh);
}

/** A live event: reload what it touches (the grid, the open cell). */
export function onEvent(kind, data) {
  if (!board.module) return;
  if (kind === "entries" && data && data.module && data.module !== board.module) return;
  if (kind === "entries" && data && data.dates && !data.dates.some((d) => d >= board.week && d <= addDays(board.week, 6))) return;
  clearTimeout(board.pending);
  board.pending = setTimeout(refresh, 150); // a burst of events: one reload
}
