// Procore publishing dashboard: vanilla JS, no build step. Talks to the gateway's /api with the
// bearer token stored in localStorage (the dev login page, or the MobiClocks sign-in, puts it there).
"use strict";

const TOKEN_KEY = "gateway.token";
const STATUS = {
  todo: "To do",
  publishing: "Publishing",
  published: "Published",
  updated: "Updated",
  failed: "Failed",
  deleted: "Deleted",
  non_publishable: "Non publishable",
};
const ACTION = { publish: "Publish", republish: "Republish", force_publish: "Force publish" };
const MODULE = { manpower: "Manpower", timecard: "Timecard", production_quantity: "Production quantity" };

const state = {
  view: "board", // "board" (a module's dashboard), or an admin screen: "mapping", "setup" (static/mapping.js)
  module: "manpower",
  week: mondayOf(new Date()),
  status: "",
  me: null,
  cell: null, // {jobSiteId, date} of the open details table
  pollTimer: null,
};

// --- small helpers -------------------------------------------------------------------

function $(id) {
  return document.getElementById(id);
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function iso(d) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

function parseDay(s) {
  const [y, m, d] = s.split("-").map(Number);
  return new Date(y, m - 1, d);
}

function mondayOf(d) {
  const day = new Date(d.getFullYear(), d.getMonth(), d.getDate());
  day.setDate(day.getDate() - ((day.getDay() + 6) % 7));
  return iso(day);
}

function addDays(s, n) {
  const d = parseDay(s);
  d.setDate(d.getDate() + n);
  return iso(d);
}

const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: "short" });
const dateFmt = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" });
const longFmt = new Intl.DateTimeFormat(undefined, { weekday: "long", day: "numeric", month: "long", year: "numeric" });
const stampFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

function num(value) {
  if (value === null || value === undefined) return "—";
  const n = Number(value);
  return Number.isInteger(n) ? n.toLocaleString() : n.toLocaleString(undefined, { maximumFractionDigits: 2 });
}

function hoursText(value) {
  return value === null || value === undefined ? "—" : `${num(value)} h`;
}

function badge(status) {
  return el("span", { class: `badge s-${status}` }, STATUS[status] || status);
}

function toast(text, kind = "info") {
  const node = el("div", { class: `toast ${kind}` }, text);
  $("toasts").append(node);
  setTimeout(() => node.classList.add("gone"), 4200);
  setTimeout(() => node.remove(), 4800);
}

function can(permission) {
  return Boolean(state.me && state.me.permissions.includes(permission));
}

// --- API -----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.message || (typeof body.detail === "string" ? body.detail : null))) || `HTTP ${status}`);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const token = localStorage.getItem(TOKEN_KEY);
  if (!token) throw new ApiError(401, { detail: "not signed in" });
  const response = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", ...(options.headers || {}) },
  });
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

function showMessage(html) {
  const box = $("message");
  box.replaceChildren(...html);
  box.hidden = false;
  $("board").replaceChildren();
}

function handleError(error) {
  if (error instanceof ApiError && error.status === 401) {
    localStorage.removeItem(TOKEN_KEY);
    $("who").replaceChildren();
    showMessage([
      el("h2", {}, "You are not signed in"),
      el(
        "p",
        {},
        "Sign in through MobiClocks, or in development open the dev login link that ",
        el("code", {}, "make run"),
        " prints (",
        el("code", {}, "/dev/login?account_id=…"),
        ").",
      ),
    ]);
    return;
  }
  toast(error.message || String(error), "error");
}

// --- dashboard -----------------------------------------------------------------------

function cellNumbers(cell) {
  if (state.module === "manpower") {
    return el(
      "div",
      { class: "numbers" },
      el("span", { class: "big", title: "Manpower" }, num(cell.manpower), el("small", {}, " people")),
      el("span", { class: "muted", title: "Total hours" }, hoursText(cell.total_hours)),
    );
  }
  if (state.module === "timecard") {
    return el(
      "div",
      { class: "numbers" },
      el("span", { class: "big" }, num(cell.timecards), el("small", {}, cell.timecards === 1 ? " timecard" : " timecards")),
    );
  }
  const list = cell.quantities || [];
  const shown = list.slice(0, 3);
  return el(
    "ul",
    { class: "quantities" },
    shown.map((q) =>
      el("li", { title: q.cost_code }, el("span", { class: "cc" }, q.cost_code), el("b", {}, `${num(q.quantity)} ${q.unit}`)),
    ),
    list.length > shown.length ? el("li", { class: "muted" }, `+${list.length - shown.length} more`) : null,
  );
}

function cellActions(cell) {
  if (!cell.actions.length) return null;
  return el(
    "div",
    { class: "cell-actions" },
    cell.actions.map((action) =>
      el(
        "button",
        {
          class: action === "publish" ? "mini primary" : "mini",
          disabled: !can("procore.publish"),
          title: can("procore.publish") ? "" : "Needs the procore.publish permission",
          onclick: (event) => {
            event.stopPropagation();
            publish(action, { kind: "cell", job_site_id: cell.job_site_id, work_date: cell.work_date });
          },
        },
        ACTION[action],
      ),
    ),
  );
}

function renderCell(cell) {
  if (!cell) return el("td", { class: "cell empty" });
  const counts = Object.entries(cell.counts)
    .map(([s, n]) => `${STATUS[s]}: ${n}`)
    .join(" · ");
  return el(
    "td",
    {
      class: `cell has s-${cell.status}`,
      tabindex: "0",
      title: `${cell.entries} ${cell.entries === 1 ? "entry" : "entries"} — ${counts}`,
      onclick: () => openDetails(cell.job_site_id, cell.work_date),
      onkeydown: (e) => {
        if (e.key === "Enter") openDetails(cell.job_site_id, cell.work_date);
      },
    },
    cellNumbers(cell),
    el("div", { class: "status-line" }, badge(cell.status), cellActions(cell)),
  );
}

function renderDashboard(data) {
  $("message").hidden = true;
  const today = iso(new Date());
  const head = el(
    "tr",
    {},
    el("th", { class: "site-head" }, "Job site"),
    data.days.map((d) =>
      el(
        "th",
        { class: d === today ? "today" : "" },
        el("span", { class: "dow" }, dayFmt.format(parseDay(d))),
        el("span", { class: "dom" }, dateFmt.format(parseDay(d))),
      ),
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
      row.days.map(renderCell),
    ),
  );
  const board = $("board");
  if (!rows.length) {
    const filtered = state.status ? ` with status ${STATUS[state.status]}` : "";
    board.replaceChildren(
      el("div", { class: "empty-board" }, el("p", {}, `No ${MODULE[state.module].toLowerCase()} entries${filtered} this week.`)),
    );
  } else {
    board.replaceChildren(el("table", { class: "grid" }, el("thead", {}, head), el("tbody", {}, rows)));
  }
  const publishing = data.rows.some((r) => r.days.some((c) => c && c.status === "publishing"));
  schedulePoll(publishing ? 4000 : 30000);
}

async function loadDashboard() {
  if (state.view !== "board") return;
  const params = new URLSearchParams({ week_start: state.week });
  if (state.status) params.append("status", state.status);
  try {
    renderDashboard(await api(`/api/modules/${state.module}/dashboard?${params}`));
  } catch (error) {
    handleError(error);
  }
}

function schedulePoll(ms) {
  clearTimeout(state.pollTimer);
  state.pollTimer = setTimeout(() => {
    if (document.visibilityState === "visible") refresh();
    else schedulePoll(ms);
  }, ms);
}

function refresh() {
  loadDashboard();
  if (state.cell) loadDetails();
}

// --- details table -------------------------------------------------------------------

function cellValue(row, key) {
  const value = row[key];
  if (key === "status") {
    return el(
      "div",
      { class: "status-cell" },
      badge(value),
      row.last_error ? el("div", { class: "row-error", title: row.last_error }, row.last_error) : null,
    );
  }
  if (["total_hours", "average", "timelog_duration"].includes(key)) return hoursText(value);
  if (["manpower", "unit"].includes(key)) return num(value);
  if (value === null || value === undefined || value === "") return el("span", { class: "muted" }, "—");
  return String(value);
}

function renderDetails(data) {
  $("drawer-title").textContent = data.job_site.name;
  $("drawer-sub").replaceChildren(
    `${MODULE[data.module]} · ${longFmt.format(parseDay(data.work_date))} · `,
    badge(data.status),
  );
  const mayPublish = can("procore.publish");
  $("details-publish").disabled = !mayPublish || !data.actions.includes("publish");
  $("details-force").disabled = !mayPublish || !data.actions.includes("force_publish");
  $("details-publish").title = mayPublish ? "" : "Needs the procore.publish permission";

  const errors = $("errors");
  if (data.errors.length) {
    const affected = new Set(data.errors.flatMap((e) => e.entry_ids)).size;
    errors.replaceChildren(
      el(
        "details",
        {},
        el(
          "summary",
          {},
          el("b", {}, "Errors"),
          ` — ${affected} ${affected === 1 ? "entry is" : "entries are"} Non publishable. Show why`,
        ),
        el(
          "ul",
          {},
          data.errors.map((e) =>
            el("li", {}, e.message, el("span", { class: "muted" }, ` (${e.entry_ids.length} ${e.entry_ids.length === 1 ? "row" : "rows"})`)),
          ),
        ),
      ),
    );
    errors.hidden = false;
  } else {
    errors.hidden = true;
  }

  const head = el("tr", {}, data.columns.map((c) => el("th", { class: `c-${c.key}` }, c.label)), el("th", { class: "c-actions" }));
  const body = data.rows.map((row) =>
    el(
      "tr",
      { class: `s-${row.status}`, "data-entry": row.entry_id },
      data.columns.map((c) => el("td", { class: `c-${c.key}` }, cellValue(row, c.key))),
      el(
        "td",
        { class: "c-actions" },
        row.actions.map((action) =>
          el(
            "button",
            {
              class: "mini",
              disabled: !mayPublish,
              onclick: () => publish(action, { kind: "entries", entry_ids: [row.entry_id] }),
            },
            ACTION[action],
          ),
        ),
      ),
    ),
  );
  $("details").replaceChildren(el("thead", {}, head), el("tbody", {}, body));
}

async function loadDetails() {
  const { jobSiteId, date } = state.cell;
  try {
    renderDetails(await api(`/api/modules/${state.module}/cells/${encodeURIComponent(jobSiteId)}/${date}`));
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      closeDetails();
      toast("That cell has no entries any more.");
      return;
    }
    handleError(error);
  }
}

function openDetails(jobSiteId, date) {
  state.cell = { jobSiteId, date };
  syncUrl();
  $("details").replaceChildren();
  $("errors").hidden = true;
  $("overlay").hidden = false;
  loadDetails();
}

function closeDetails() {
  state.cell = null;
  syncUrl();
  $("overlay").hidden = true;
  $("details-menu").hidden = true;
}

// --- commands ------------------------------------------------------------------------

async function publish(action, scope) {
  try {
    const result = await api(`/api/modules/${state.module}/publish`, {
      method: "POST",
      body: JSON.stringify({ action, scope }),
    });
    const n = result.eligible_entries;
    toast(
      n ? `${ACTION[action]}: ${n} ${n === 1 ? "entry" : "entries"} on the way to Procore.` : `${ACTION[action]}: nothing to send.`,
      n ? "ok" : "info",
    );
    setTimeout(refresh, 800);
  } catch (error) {
    handleError(error);
  }
}

// --- wiring --------------------------------------------------------------------------

function syncUrl() {
  if (state.view !== "board") return; // admin screens keep their own hash
  const params = new URLSearchParams({ week: state.week });
  if (state.status) params.set("status", state.status);
  if (state.cell) params.set("cell", `${state.cell.date}/${state.cell.jobSiteId}`);
  history.replaceState(null, "", `#${state.module}?${params}`);
}

function readUrl() {
  const [module, query] = location.hash.slice(1).split("?");
  if (MODULE[module]) state.module = module;
  if (window.AdminViews && window.AdminViews[module]) state.view = module;
  const params = new URLSearchParams(query || "");
  if (/^\d{4}-\d{2}-\d{2}$/.test(params.get("week") || "")) state.week = mondayOf(parseDay(params.get("week")));
  if (STATUS[params.get("status")]) state.status = params.get("status");
  const cell = /^(\d{4}-\d{2}-\d{2})\/(.+)$/.exec(params.get("cell") || "");
  if (cell) state.cell = { date: cell[1], jobSiteId: cell[2] };
}

function renderChrome() {
  for (const tab of document.querySelectorAll("#tabs button")) {
    const selected = tab.dataset.view ? tab.dataset.view === state.view : state.view === "board" && tab.dataset.module === state.module;
    tab.setAttribute("aria-selected", String(selected));
  }
  const board = state.view === "board";
  $("toolbar").hidden = !board;
  $("board").hidden = !board;
  $("admin").hidden = board;
  if (!board) $("message").hidden = true;
  $("week-picker").value = state.week;
  const end = addDays(state.week, 6);
  $("week-label").textContent = `${dateFmt.format(parseDay(state.week))} – ${dateFmt.format(parseDay(end))}`;
  $("status-filter").value = state.status;
  syncUrl();
}

function go(changes) {
  Object.assign(state, { view: "board" }, changes);
  if (state.cell) closeDetails();
  renderChrome();
  loadDashboard();
}

async function start() {
  readUrl();
  const select = $("status-filter");
  for (const [value, label] of Object.entries(STATUS)) select.append(el("option", { value }, label));

  for (const tab of document.querySelectorAll("#tabs button")) {
    tab.addEventListener("click", () => (tab.dataset.view ? openView(tab.dataset.view) : go({ module: tab.dataset.module })));
  }
  $("prev-week").addEventListener("click", () => go({ week: addDays(state.week, -7) }));
  $("next-week").addEventListener("click", () => go({ week: addDays(state.week, 7) }));
  $("this-week").addEventListener("click", () => go({ week: mondayOf(new Date()) }));
  $("week-picker").addEventListener("change", (e) => {
    if (e.target.value) go({ week: mondayOf(parseDay(e.target.value)) });
  });
  select.addEventListener("change", (e) => go({ status: e.target.value }));
  $("refresh").addEventListener("click", refresh);

  $("drawer-close").addEventListener("click", closeDetails);
  $("overlay").addEventListener("click", (e) => {
    if (e.target === $("overlay")) closeDetails();
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") closeDetails();
  });
  $("details-publish").addEventListener("click", () =>
    publish("publish", { kind: "cell", job_site_id: state.cell.jobSiteId, work_date: state.cell.date }),
  );
  $("details-more").addEventListener("click", (e) => {
    e.stopPropagation();
    $("details-menu").hidden = !$("details-menu").hidden;
  });
  document.addEventListener("click", () => ($("details-menu").hidden = true));
  $("details-force").addEventListener("click", () =>
    publish("force_publish", { kind: "cell", job_site_id: state.cell.jobSiteId, work_date: state.cell.date }),
  );

  renderChrome();
  try {
    state.me = await api("/api/me");
    $("who").replaceChildren(
      el("span", { class: "user" }, state.me.user_id),
      el("span", { class: "account" }, `Account ${state.me.account_id}`),
    );
  } catch (error) {
    handleError(error);
    return;
  }
  if (state.view !== "board") {
    openView(state.view, location.hash);
    return;
  }
  loadDashboard();
  if (state.cell) openDetails(state.cell.jobSiteId, state.cell.date);
}

// Setup and Data mapping live in static/mapping.js (window.AdminViews).
function openView(view, hash) {
  if (state.cell) closeDetails();
  state.view = view;
  renderChrome();
  if (!hash) history.replaceState(null, "", `#${view}`);
  window.AdminViews[view]($("admin"));
}

window.addEventListener("DOMContentLoaded", start);
