// An entry's publish history (GET /api/entries/{id}): each step — when, action, who, outcome, message — and the
// trace it was recorded in: a link into the trace viewer when the gateway has one (TRACE_URL_TEMPLATE), the id
// otherwise, copyable either way. Opened from the History button of a row of a cell's details.

import { api, badge, dialog, el, handleError, label, returnFocus } from "/static/core.js";

const day = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
const time = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });
const OUTCOME_CLASS = { "": "s-publishing", published: "s-published", deleted: "s-deleted", conflict: "s-failed", failed: "s-failed", rejected: "s-failed" };

function words(key) {
  return label("history", key);
}

function muted(text) {
  return el("span", { class: "muted" }, text);
}

/** A request step's message is its operation ("create"): said in words; any other message is shown as written. */
function messageText(step) {
  if (!step.message) return muted("—");
  const operations = label("history_operations", step.message);
  return step.outcome === null && operations !== step.message ? operations : step.message;
}

async function copyTraceId(id, status) {
  try {
    await navigator.clipboard.writeText(id);
    status.textContent = words("copied");
  } catch {
    status.textContent = words("copy_failed");
  }
  setTimeout(() => {
    status.textContent = "";
  }, 4000);
}

/** The trace id shortened (its first 8 hex digits); the full id in the title and the accessible name. */
function traceCell(step, status) {
  if (!step.trace_id) return muted(words("no_trace"));
  const id = step.trace_id;
  const named = `${words("trace")} ${id}`;
  const short = el("code", {}, `${id.slice(0, 8)}…`);
  const shown = step.trace_url
    ? el("a", { class: "trace-id", href: step.trace_url, target: "_blank", rel: "noopener", title: named, "aria-label": `${named} (opens in a new tab)`, "data-trace-id": id }, short)
    : el("span", { class: "trace-id", title: named, "data-trace-id": id }, el("span", { "aria-hidden": "true" }, short), el("span", { class: "sr-only" }, named));
  const copy = el("button", { type: "button", class: "mini copy", "aria-label": `${words("copy")} ${named}`, title: `${words("copy")} ${id}`, onclick: () => copyTraceId(id, status) }, words("copy"));
  return el("span", { class: "trace" }, shown, copy);
}

function outcomeCell(step) {
  const key = step.outcome || "";
  return el("span", { class: `badge ${OUTCOME_CLASS[key] || "s-todo"}` }, label("history_outcomes", key));
}

function historyTable(steps, status) {
  const columns = ["at", "action", "requested_by", "outcome", "message", "trace"];
  return el(
    "table",
    { class: "history" },
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col", class: `h-${c}` }, words(c))))),
    el(
      "tbody",
      {},
      steps.map((step) =>
        el(
          "tr",
          { "data-action": step.action, "data-outcome": step.outcome || "" },
          el("td", { class: "h-at" }, el("time", { datetime: step.at }, day.format(new Date(step.at)), " ", el("span", { class: "muted" }, time.format(new Date(step.at))))),
          el("td", { class: "h-action" }, label("history_actions", step.action)),
          el("td", { class: "h-requested_by" }, step.requested_by || muted(words("system"))),
          el("td", { class: "h-outcome" }, outcomeCell(step)),
          el("td", { class: "h-message" }, messageText(step)),
          el("td", { class: "h-trace" }, traceCell(step, status)),
        ),
      ),
    ),
  );
}

function historyBody(entry) {
  const status = el("p", { class: "copy-status", role: "status", "aria-live": "polite" });
  const summary = el(
    "p",
    { class: "history-summary" },
    badge(entry.status),
    entry.procore_id ? muted(` ${words("procore_record")} ${entry.procore_id}`) : null,
  );
  if (!entry.history.length) return [summary, el("p", { class: "muted" }, words("empty"))];
  return [summary, el("div", { class: "history-wrap" }, historyTable(entry.history, status)), status];
}

async function openHistory(entryId, name, where, opener) {
  opener.setAttribute("aria-busy", "true");
  let entry;
  try {
    entry = await api(`/api/entries/${encodeURIComponent(entryId)}`);
  } catch (error) {
    handleError(error);
    return;
  } finally {
    opener.removeAttribute("aria-busy");
  }
  await dialog({
    title: `${words("title")}: ${[name, where].filter(Boolean).join(", ")}`,
    body: historyBody(entry),
    wide: true,
    actions: [{ label: words("close"), value: null, kind: "ghost" }],
  });
  returnFocus(opener);
}

/** The History button of a details row: `name` says which row (its first column), `where` the cell. */
export function historyButton(entryId, name, where) {
  const text = words("open");
  const button = el("button", { type: "button", class: "mini history-open", "aria-haspopup": "dialog", "aria-label": name ? `${text}: ${name}` : text }, text);
  button.addEventListener("click", () => openHistory(entryId, name, where, button));
  return button;
}
