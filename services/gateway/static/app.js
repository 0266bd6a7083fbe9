// The dashboard's entry point: signs in (token from localStorage), loads the labels, draws the top tabs and
// shows the screen the URL names: a module's dashboard (board.js), Data mapping (mapping.js) or Setup
// (setup.js). Live events (core.js) keep whatever is on screen current without a reload.

import * as board from "/static/board.js";
import { $, api, el, handleError, keyboardTabs, label, loadLabels, navigate, onLive, route, selectTab, startLive, state } from "/static/core.js";
import * as mapping from "/static/mapping.js";
import * as setup from "/static/setup.js";

const ADMIN = { mapping: "procore.mapping", setup: "procore.setup" };
let lastModule = "manpower";

function signedOut() {
  $("who").replaceChildren();
  $("tabs").replaceChildren();
  board.hide();
  $("admin").hidden = true;
  const box = $("message");
  box.replaceChildren(
    el("h2", {}, "You are not signed in"),
    el("p", {}, "Sign in through MobiClocks. In development, open the dev login link that ", el("code", {}, "make run"), " prints (", el("code", {}, "/dev/login?account_id=…"), ")."),
  );
  box.hidden = false;
}

function drawTabs() {
  const list = $("tabs");
  const tabs = [
    ...Object.keys(state.labels.modules).map((module) => ({ screen: module, text: label("modules", module) })),
    { screen: "mapping", text: "Data mapping" },
    { screen: "setup", text: "Setup" },
  ];
  list.replaceChildren(
    ...tabs.map((t) => el("a", { role: "tab", id: `top-${t.screen}`, href: `#${t.screen}`, "data-screen": t.screen, "aria-controls": "main" }, t.text)),
  );
  keyboardTabs(list, (tab) => open(tab.dataset.screen));
  list.addEventListener("click", (e) => {
    const tab = e.target.closest('[role="tab"]');
    if (!tab) return;
    e.preventDefault();
    open(tab.dataset.screen);
  });
}

/** A top tab: a module keeps the week and status filter; admin screens open fresh. */
function open(screen) {
  const { params } = route();
  if (state.labels.modules[screen]) navigate(screen, { week: params.get("week"), status: params.get("status") });
  else navigate(screen, {});
}

function render() {
  const { screen, params } = route();
  const known = state.labels.modules[screen] || ADMIN[screen];
  if (!known) {
    navigate(lastModule, {}, true);
    return;
  }
  const tab = document.querySelector(`#tabs [data-screen="${screen}"]`);
  selectTab($("tabs"), tab);
  $("main").setAttribute("aria-labelledby", tab.id);
  $("message").hidden = true;
  if (state.labels.modules[screen]) {
    lastModule = screen;
    $("admin").hidden = true;
    document.title = `${label("modules", screen)} · Procore publishing`;
    board.show(screen, params);
  } else {
    board.hide();
    document.title = `${tab.textContent} · Procore publishing`;
    (screen === "mapping" ? mapping : setup).show(params);
  }
}

async function start() {
  window.addEventListener("signed-out", signedOut);
  try {
    await loadLabels();
  } catch (error) {
    handleError(error);
    return;
  }
  try {
    state.me = await api("/api/me");
  } catch (error) {
    handleError(error);
    return;
  }
  $("who").replaceChildren(el("span", { class: "user" }, state.me.user_id), el("span", { class: "account" }, `Account ${state.me.account_id}`));
  drawTabs();
  board.wireToolbar();
  // As the help article says: with Two-way integration there is no Data mapping to do, so no Data mapping tab.
  window.addEventListener("setup-changed", () => {
    $("top-mapping").hidden = Boolean(state.setup && state.setup.two_way);
  });
  await setup.refreshSetupState();
  window.addEventListener("hashchange", render);
  onLive((kind, data) => {
    if (kind === "open") board.refresh(); // anything missed while the stream was down
    board.onEvent(kind, data);
    mapping.onEvent(kind, data);
    setup.onEvent(kind, data);
  });
  startLive();
  render();
}

start();
