// Development only: the /dev/login page carries a development token (data-token) and where to go next
// (data-next). Kept in this file, not inline in the page: the Content-Security-Policy allows no inline script.
"use strict";

(function () {
  const holder = document.getElementById("dev-login");
  const next = holder.dataset.next || "/";
  localStorage.setItem("gateway.token", holder.dataset.token);
  // Only a path on this origin: never somewhere else.
  location.replace(next.startsWith("/") && !next.startsWith("//") ? next : "/");
})();
