// tq console: progressive enhancement only (every page works without it). No framework, no inline script, no
// dialogs (a destructive action that needs a second look has a confirmation page, as the dead letters' redrive).
"use strict";

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
    if (response.status === 401) {
      window.location.reload(); // the session ended: the page goes to sign in, coming back here after
      return;
    }
    const text = await response.text();
    box.textContent = response.ok ? (text || "(the run printed nothing)") : `${response.status}: log not available`;
    if (response.ok) box.dataset.loaded = "1";
  } catch (error) {
    box.textContent = "Could not load the log.";
  }
});

// Live parts: the element with data-live="<SSE URL>" (the page's <main>) is followed while the page is visible. On
// each `changed` event the page is fetched again and its <main> swapped in place, keeping the scroll position, the
// logs that were open, the focus, and anything being typed (the swap waits until the field is left). The stream is
// closed while the page is hidden, so an idle tab costs nothing, and opened again from the page as shown when it is
// visible (its URL carries what the page shows: a change meanwhile is told at once). Errors back off: 1 s, doubling
// to a minute, with jitter; a stream that opens resets the pause.
const live = { source: null, timer: 0, retryMs: 1000, fetching: false, again: false, deferred: false };
const LIVE_RETRY_MAX_MS = 60000;

function liveUrl() {
  const element = document.querySelector("[data-live]");
  return element ? element.dataset.live : null;
}

function shownSeen() {
  const url = liveUrl();
  return url ? new URL(url, window.location.href).searchParams.get("seen") : null;
}

function editing() {
  const main = document.querySelector("main");
  const active = document.activeElement;
  return Boolean(main && active && main.contains(active) && active.matches("input, select, textarea"));
}

function swapMain(html) {
  const fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main");
  const main = document.querySelector("main");
  if (!fresh || !main) return;
  const open = new Map();
  main.querySelectorAll("a[data-log][aria-expanded='true']").forEach((link) => {
    const box = document.getElementById(link.getAttribute("aria-controls"));
    if (box) open.set(link.getAttribute("aria-controls"), box.textContent);
  });
  const details = [...main.querySelectorAll("details[id][open]")].map((element) => element.id);
  const focused = main.contains(document.activeElement) && document.activeElement.id ? document.activeElement.id : "";
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
  details.forEach((id) => document.getElementById(id)?.setAttribute("open", ""));
  if (focused) document.getElementById(focused)?.focus({ preventScroll: true });
  window.scrollTo(x, y);
}

async function refresh() {
  if (live.fetching) {
    live.again = true; // a change during the fetch: fetch once more after it
    return;
  }
  if (editing()) {
    live.deferred = true;
    return;
  }
  live.fetching = true;
  try {
    const response = await fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (response.status === 401 || response.redirected) {
      window.location.reload(); // the session ended: the page goes to sign in, coming back here after
      return;
    }
    if (response.ok && (response.headers.get("content-type") || "").startsWith("text/html")) {
      swapMain(await response.text());
      if (!liveUrl()) closeLive(); // the task ended: nothing more to follow
    }
  } catch (error) {
    // Unreachable: the stream fails too and backs off; the next change fetches again.
  } finally {
    live.fetching = false;
    if (live.again) {
      live.again = false;
      refresh();
    }
  }
}

function closeLive() {
  window.clearTimeout(live.timer);
  if (live.source) {
    live.source.close();
    live.source = null;
  }
}

function openLive() {
  closeLive();
  const url = liveUrl();
  if (!url || !window.EventSource || document.hidden) return;
  const source = new EventSource(url);
  live.source = source;
  source.addEventListener("open", () => {
    live.retryMs = 1000;
  });
  source.addEventListener("changed", (event) => {
    if (event.lastEventId && event.lastEventId === shownSeen()) return; // the page shows that already
    refresh();
  });
  source.addEventListener("error", () => {
    // The stream ended (its lifetime is up), was refused (204: the task ended; 401: the session ended; 503: a full
    // replica) or the server is out of reach: open it again after a pause, from the page as it is shown then. A
    // refusal (the EventSource closed itself) fetches the page first: an ended task's page has no stream to open,
    // and an ended session reloads the page, which goes to sign in.
    const refused = source.readyState === EventSource.CLOSED;
    closeLive();
    if (refused) refresh();
    live.timer = window.setTimeout(openLive, live.retryMs * (0.75 + Math.random() / 2));
    live.retryMs = Math.min(live.retryMs * 2, LIVE_RETRY_MAX_MS);
  });
}

document.addEventListener("visibilitychange", () => (document.hidden ? closeLive() : openLive()));
document.addEventListener("focusout", () => {
  window.setTimeout(() => {
    if (live.deferred && !editing()) {
      live.deferred = false;
      refresh();
    }
  }, 0);
});
window.addEventListener("pagehide", closeLive);
window.addEventListener("pageshow", (event) => {
  if (event.persisted) openLive(); // back from the back/forward cache
});
document.addEventListener("DOMContentLoaded", openLive);
