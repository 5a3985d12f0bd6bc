// tq console: progressive enhancement only (every page works without it). No framework, no inline script.
"use strict";

// Forms with data-confirm ask before they POST.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

// A run's "Log" link shows the log text in place (its <pre data-log-for="...">) instead of navigating.
document.addEventListener("click", async (event) => {
  const link = event.target instanceof Element ? event.target.closest("a[data-log]") : null;
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
  event.preventDefault();
  const box = document.getElementById(link.getAttribute("aria-controls"));
  if (!box) return;
  if (link.getAttribute("aria-expanded") === "true") {
    link.setAttribute("aria-expanded", "false");
    box.hidden = true;
    return;
  }
  link.setAttribute("aria-expanded", "true");
  box.hidden = false;
  if (box.dataset.loaded) return;
  box.textContent = "Loading…";
  try {
    const response = await fetch(link.href, { credentials: "same-origin" });
    const text = await response.text();
    box.textContent = response.ok ? (text || "(the run printed nothing)") : `${response.status}: log not available`;
    if (response.ok) box.dataset.loaded = "1";
  } catch (error) {
    box.textContent = "Could not load the log.";
  }
});

// Live parts: an element with data-live="<SSE URL>" reloads <main> in place on each `changed` event, keeping the
// scroll position and the logs that were open.
function swapMain(html) {
  const fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main");
  const main = document.querySelector("main");
  if (!fresh || !main) return;
  const open = new Map();
  main.querySelectorAll("a[data-log][aria-expanded='true']").forEach((link) => {
    const box = document.getElementById(link.getAttribute("aria-controls"));
    if (box) open.set(link.getAttribute("aria-controls"), box.textContent);
  });
  const x = window.scrollX;
  const y = window.scrollY;
  main.replaceWith(fresh);
  open.forEach((text, id) => {
    const box = document.getElementById(id);
    const link = document.querySelector(`a[data-log][aria-controls="${CSS.escape(id)}"]`);
    if (box && link) {
      box.textContent = text;
      box.dataset.loaded = "1";
      box.hidden = false;
      link.setAttribute("aria-expanded", "true");
    }
  });
  window.scrollTo(x, y);
}

function follow() {
  const element = document.querySelector("[data-live]");
  if (!element || !window.EventSource) return;
  const source = new EventSource(element.dataset.live);
  let pending = false;
  source.addEventListener("changed", async () => {
    if (pending) return;
    pending = true;
    try {
      const response = await fetch(window.location.href, { credentials: "same-origin" });
      if (response.ok && response.headers.get("content-type")?.startsWith("text/html")) {
        swapMain(await response.text());
      }
    } finally {
      pending = false;
    }
  });
}

document.addEventListener("DOMContentLoaded", follow);
