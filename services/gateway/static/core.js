// The small shared core of the dashboard: DOM helpers, the API client, the labels (loaded from /api/labels:
// the JavaScript keeps no list of them), toasts, dialogs, menus, tab lists and the live event stream.
// Plain ES modules, no build step, no third-party code.

const TOKEN_KEY = "gateway.token";

export const state = {
  me: null,
  labels: null, // GET /api/labels: {statuses, modules, permissions, entities, actions, connection_methods}
  setup: null, // GET /api/setup: what is missing, two-way, manual mappings
};

// --- DOM ---------------------------------------------------------------------------------

export function $(id) {
  return document.getElementById(id);
}

export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// --- dates and numbers -------------------------------------------------------------------

export function iso(d) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

export function parseDay(s) {
  const [y, m, d] = s.split("-").map(Number);
  return new Date(y, m - 1, d);
}

export function mondayOf(d) {
  const day = new Date(d.getFullYear(), d.getMonth(), d.getDate());
  day.setDate(day.getDate() - ((day.getDay() + 6) % 7));
  return iso(day);
}

export function addDays(s, n) {
  const d = parseDay(s);
  d.setDate(d.getDate() + n);
  return iso(d);
}

export const fmt = {
  day: new Intl.DateTimeFormat(undefined, { weekday: "short" }),
  date: new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" }),
  long: new Intl.DateTimeFormat(undefined, { weekday: "long", day: "numeric", month: "long", year: "numeric" }),
  stamp: new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" }),
};

export function num(value) {
  if (value === null || value === undefined || value === "") return "—";
  const n = Number(value);
  if (Number.isNaN(n)) return String(value);
  return Number.isInteger(n) ? n.toLocaleString() : n.toLocaleString(undefined, { maximumFractionDigits: 2 });
}

/** "Connect to Procore, then choose the Procore company": steps named by their labels, in one sentence. */
export function steps(keys) {
  return keys.map((k, i) => {
    const text = label("setup_steps", k);
    return i ? text.charAt(0).toLowerCase() + text.slice(1) : text;
  }).join(", then ");
}

export function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

// --- labels ------------------------------------------------------------------------------

/** The user-facing name of `key` in the labels group `group` (statuses, modules, permissions, entities, ...). */
export function label(group, key) {
  const names = (state.labels && state.labels[group]) || {};
  return names[key] || key;
}

export async function loadLabels() {
  const response = await fetch("/api/labels");
  if (!response.ok) throw new Error(`The dashboard's labels could not be loaded (HTTP ${response.status}).`);
  state.labels = await response.json();
}

export function badge(status) {
  return el("span", { class: `badge s-${status}` }, label("statuses", status));
}

/** "This needs the Procore Connect data mapping permission …": the permission's name as the help article says it. */
export function permissionHint(permission) {
  return `This needs the ${label("permissions", permission)} permission, enabled for your role in Administration > Role Permissions > Procore.`;
}

// --- API ---------------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, body) {
    const detail = body && (body.message || (typeof body.detail === "string" ? body.detail : null));
    super(detail || `The server answered ${status}.`);
    this.status = status;
    this.body = body;
  }
}

export function token() {
  return localStorage.getItem(TOKEN_KEY);
}

export function signOut() {
  localStorage.removeItem(TOKEN_KEY);
}

export async function api(path, options = {}) {
  const bearer = token();
  if (!bearer) throw new ApiError(401, { detail: "not signed in" });
  const response = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${bearer}`, "Content-Type": "application/json", ...(options.headers || {}) },
  });
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

export function can(permission) {
  return Boolean(state.me && state.me.permissions.includes(permission));
}

/** A setup or mapping command answers 202 with a command id; wait for its outcome and say it in a toast. */
export async function awaitCommand(accepted, what) {
  const deadline = Date.now() + 60000;
  while (Date.now() < deadline) {
    const outcome = await api(`/api/commands/${accepted.command_id}`);
    if (outcome.status !== "pending") {
      const ok = outcome.status === "done";
      const text = outcome.message || (ok ? "Done." : "Not done.");
      toast(what ? `${what}: ${text}` : text, ok ? "ok" : "error");
      return outcome;
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  toast(`${what}: still running. Check again in a moment.`, "info");
  return null;
}

// --- toasts ------------------------------------------------------------------------------

/**
 * Toasts live in the top layer with whatever is on top: while a modal dialog (details, a confirmation) is open, the
 * rest of the page is inert and drawn behind it, so the toast area moves into the topmost open dialog — its links
 * ("See why") stay visible and clickable — and back out when that dialog closes.
 */
function topDialog(except = null) {
  const open = [...document.querySelectorAll("dialog[open]")].filter((d) => d !== except && d.matches(":modal"));
  return open.length ? open[open.length - 1] : null;
}

export function raiseToasts(except = null) {
  const area = $("toasts");
  if (!area) return;
  const host = topDialog(except) || document.body;
  if (area.parentElement !== host || host.lastElementChild !== area) host.append(area);
}

// `close` does not bubble: listen in the capture phase for every dialog, before a closed dialog is removed.
document.addEventListener("close", (event) => {
  if (event.target instanceof HTMLDialogElement && event.target.contains($("toasts"))) raiseToasts(event.target);
}, true);

export function toast(text, kind = "info", ms = 5000) {
  const node = el("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
  raiseToasts();
  $("toasts").append(node);
  setTimeout(() => node.remove(), ms);
  return node;
}

/** Open a dialog as modal and keep the toasts above it. */
export function showModal(node) {
  node.showModal();
  raiseToasts();
}

export function handleError(error) {
  if (error instanceof ApiError && error.status === 401) {
    signOut();
    window.dispatchEvent(new CustomEvent("signed-out"));
    return;
  }
  toast(error.message || String(error), "error", 8000);
}

// --- dialogs -----------------------------------------------------------------------------

/**
 * A modal dialog (native <dialog>: focus stays inside, Escape cancels). `body` is a node or list of nodes;
 * `actions` is [{label, value, kind}]; resolves with the chosen value, or null when cancelled.
 */
export function dialog({ title, body, actions, wide = false, focus = 0 }) {
  return new Promise((resolve) => {
    const titleId = `dlg-${Math.random().toString(36).slice(2)}`;
    const node = el(
      "dialog",
      { class: `modal${wide ? " wide" : ""}`, "aria-labelledby": titleId },
      el("h2", { id: titleId }, title),
      el("div", { class: "modal-body" }, body),
      el(
        "div",
        { class: "modal-actions" },
        actions.map((a) => el("button", { class: a.kind || "ghost", type: "button", "data-value": a.value ?? "" }, a.label)),
      ),
    );
    const buttons = [...node.querySelectorAll(".modal-actions button")];
    // Settle only once the dialog is closed (Escape included): until then it is modal, the page behind it is inert
    // and the caller could not give focus back to its opener.
    let value = null;
    buttons.forEach((button, i) =>
      button.addEventListener("click", () => {
        value = actions[i].value;
        node.close();
      }),
    );
    node.addEventListener("close", () => {
      resolve(value);
      setTimeout(() => node.remove(), 0);
    });
    document.body.append(node);
    showModal(node);
    (buttons[focus] || buttons[0]).focus();
  });
}

export async function confirmDialog(title, text, confirmLabel, kind = "danger") {
  const value = await dialog({
    title,
    body: Array.isArray(text) ? text : el("p", {}, text),
    actions: [
      { label: "Cancel", value: null, kind: "ghost" },
      { label: confirmLabel, value: true, kind },
    ],
  });
  return value === true;
}

// --- menus -------------------------------------------------------------------------------

/** A menu button: Enter/Space/ArrowDown open it, arrows move, Escape closes and returns focus. */
export function menuButton(buttonLabel, items) {
  const id = `menu-${Math.random().toString(36).slice(2)}`;
  const button = el("button", {
    class: "icon",
    type: "button",
    "aria-haspopup": "menu",
    "aria-expanded": "false",
    "aria-controls": id,
    "aria-label": buttonLabel,
    title: buttonLabel,
  }, "⋯");
  const entries = items.map((item) =>
    el("button", { role: "menuitem", type: "button", tabindex: "-1", disabled: item.disabled, "aria-disabled": item.disabled ? "true" : null }, item.label),
  );
  const menu = el("div", { class: "menu", role: "menu", id, hidden: true, "aria-label": buttonLabel }, entries);
  const wrap = el("div", { class: "more" }, button, menu);
  const close = (refocus) => {
    menu.hidden = true;
    button.setAttribute("aria-expanded", "false");
    if (refocus) button.focus();
  };
  const open = () => {
    menu.hidden = false;
    button.setAttribute("aria-expanded", "true");
    (entries.find((e) => !e.disabled) || entries[0]).focus();
  };
  button.addEventListener("click", (e) => {
    e.stopPropagation();
    menu.hidden ? open() : close(false);
  });
  button.addEventListener("keydown", (e) => {
    if (e.key === "ArrowDown") {
      e.preventDefault();
      open();
    }
  });
  menu.addEventListener("keydown", (e) => {
    const i = entries.indexOf(document.activeElement);
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      const step = e.key === "ArrowDown" ? 1 : -1;
      entries[(i + step + entries.length) % entries.length].focus();
    } else if (e.key === "Home") entries[0].focus();
    else if (e.key === "End") entries[entries.length - 1].focus();
    else if (e.key === "Escape" || e.key === "Tab") {
      e.preventDefault();
      e.stopPropagation();
      close(true);
    }
  });
  entries.forEach((entry, i) =>
    entry.addEventListener("click", (e) => {
      e.stopPropagation();
      close(true);
      if (!items[i].disabled) items[i].onselect();
    }),
  );
  const outside = () => {
    if (!wrap.isConnected) document.removeEventListener("click", outside); // the menu was redrawn
    else close(false);
  };
  document.addEventListener("click", outside);
  return wrap;
}

// --- tab lists ---------------------------------------------------------------------------

/** Arrow keys, Home and End move between the tabs of a role=tablist (roving tabindex); Enter/Space activate. */
/**
 * Run `render`, which replaces what is inside `container`, without dropping keyboard focus: a live update that
 * re-draws a grid or a details table while someone tabs through it puts focus back on the same control (same
 * cell or entry, same name), or leaves it where it was when that control is gone.
 */
export function keepFocus(container, render) {
  const active = document.activeElement;
  const key = active && active !== container && container.contains(active) ? focusKey(active) : null;
  render();
  if (!key || container.contains(active)) return;
  const same = [...container.querySelectorAll(key.tag)].find((node) => sameKey(focusKey(node), key));
  if (same) same.focus({ preventScroll: true });
}

/** Give focus back to `node` (a dialog's opener); when a live update has re-drawn it meanwhile, to the control
 * that replaced it (same cell or entry, same name). */
export function returnFocus(node) {
  if (node.isConnected) {
    node.focus();
    return;
  }
  const key = focusKey(node);
  const same = [...document.querySelectorAll(key.tag)].find((other) => sameKey(focusKey(other), key));
  if (same) same.focus();
}

function focusKey(node) {
  const cell = node.closest("td.cell");
  const row = node.closest("[data-entry]");
  return {
    tag: node.tagName.toLowerCase(),
    where: cell ? `${cell.dataset.site}/${cell.dataset.date}` : row ? row.dataset.entry : "",
    name: node.getAttribute("aria-label") || node.textContent.trim(),
  };
}

function sameKey(a, b) {
  return a.tag === b.tag && a.where === b.where && a.name === b.name;
}

export function keyboardTabs(list, activate) {
  list.addEventListener("keydown", (e) => {
    const tabs = [...list.querySelectorAll('[role="tab"]')];
    const i = tabs.indexOf(document.activeElement);
    if (i < 0) return;
    let next = null;
    if (e.key === "ArrowRight") next = tabs[(i + 1) % tabs.length];
    else if (e.key === "ArrowLeft") next = tabs[(i - 1 + tabs.length) % tabs.length];
    else if (e.key === "Home") next = tabs[0];
    else if (e.key === "End") next = tabs[tabs.length - 1];
    if (next) {
      e.preventDefault();
      next.focus();
      activate(next);
    }
  });
}

export function selectTab(list, selected) {
  for (const tab of list.querySelectorAll('[role="tab"]')) {
    const on = tab === selected;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
  }
}

// --- routing -----------------------------------------------------------------------------

/** The screen and its parameters from the URL: `#timecard?week=…&status=…`, `#mapping?tab=…&row=…`. */
export function route() {
  const [screen, query] = location.hash.slice(1).split("?");
  return { screen: screen || "", params: new URLSearchParams(query || "") };
}

export function href(screen, params) {
  const query = new URLSearchParams(Object.entries(params || {}).filter(([, v]) => v !== null && v !== undefined && v !== ""));
  const q = query.toString().replaceAll("%2F", "/"); // readable: cell=2026-11-18/site-1
  return `#${screen}${q ? `?${q}` : ""}`;
}

/** Go to a screen: a new history entry (Back works); `replace` changes the current one instead. */
export function navigate(screen, params, replace = false) {
  const target = href(screen, params);
  if (target === location.hash) return;
  if (replace) {
    history.replaceState(null, "", target);
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  } else location.hash = target;
}

// --- live events -------------------------------------------------------------------------

const listeners = new Set();
let source = null;
let retry = 1000;

/** Listen to the account's live events (`entries`, `mapping`); returns a function that stops listening. */
export function onLive(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function emit(kind, data) {
  for (const fn of listeners) {
    try {
      fn(kind, data);
    } catch (error) {
      console.error(error);
    }
  }
}

/** Server-sent events from /api/live with a short-lived ticket (EventSource cannot send the bearer token). */
export async function startLive() {
  if (source) source.close();
  let ticket;
  try {
    ticket = (await api("/api/live/ticket", { method: "POST", body: "{}" })).ticket;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return handleError(error);
    setTimeout(startLive, retry);
    retry = Math.min(retry * 2, 30000);
    return;
  }
  source = new EventSource(`/api/live?ticket=${encodeURIComponent(ticket)}`);
  document.body.dataset.live = "connecting";
  source.addEventListener("open", () => {
    retry = 1000;
    document.body.dataset.live = "open";
    emit("open", null);
  });
  for (const kind of ["entries", "mapping", "ready"]) {
    source.addEventListener(kind, (e) => emit(kind, e.data ? JSON.parse(e.data) : null));
  }
  // Changes may have been missed: reload what is on screen.
  source.addEventListener("resync", () => emit("open", null));
  const reopen = () => {
    // The ticket is short-lived: reconnect with a new one, never EventSource's retry of the old URL.
    if (source) source.close();
    source = null;
    document.body.dataset.live = "closed";
    setTimeout(startLive, retry);
    retry = Math.min(retry * 2, 30000);
  };
  source.addEventListener("bye", reopen);
  source.addEventListener("error", reopen);
}
