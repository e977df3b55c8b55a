// sluice: the pages' progressive enhancement. Every page works without it; with it, proxy URLs
// copy with one click, the project switcher applies itself, destructive forms ask first, and a
// channel's history takes new requests live over Server-Sent Events.
"use strict";

document.addEventListener("click", (ev) => {
  const button = ev.target.closest("[data-copy]");
  if (!button) return;
  const text = button.getAttribute("data-copy");
  const done = () => {
    const before = button.textContent;
    button.textContent = "Copied";
    button.setAttribute("aria-live", "polite");
    setTimeout(() => { button.textContent = before; }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, () => fallbackCopy(text, done));
  } else {
    fallbackCopy(text, done);
  }
});

// Plain-http deployments have no clipboard API: copy through a hidden text area.
function fallbackCopy(text, done) {
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "absolute";
  area.style.left = "-9999px";
  document.body.appendChild(area);
  area.select();
  try { document.execCommand("copy"); done(); } finally { area.remove(); }
}

document.addEventListener("change", (ev) => {
  const select = ev.target.closest("select[data-autosubmit]");
  if (select && select.form) select.form.submit();
});

document.addEventListener("submit", (ev) => {
  const message = ev.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) ev.preventDefault();
});

// Live history: rows arrive as server-rendered HTML. While the reader is scrolled away from the
// top, new rows wait behind a "show" button so the table does not move under them.
function startLive(table) {
  const body = table.tBodies[0];
  const toggle = document.getElementById("live-toggle");
  const banner = document.getElementById("live-banner");
  const status = document.getElementById("live-status");
  let source = null;
  let waiting = [];

  const place = (id, html) => {
    const holder = document.createElement("tbody");
    holder.innerHTML = html;
    const row = holder.firstElementChild;
    if (!row) return;
    const old = body.querySelector(`tr[data-id="${id}"]`);
    const empty = body.querySelector("tr.no-rows");
    if (empty) empty.remove();
    if (old) { old.replaceWith(row); return; }
    row.classList.add("fresh");
    body.insertBefore(row, body.firstElementChild);
  };
  const flush = () => {
    waiting.forEach(([id, html]) => place(id, html));
    waiting = [];
    banner.hidden = true;
  };
  const paused = () => window.scrollY > 120;
  const open = () => {
    source = new EventSource(table.getAttribute("data-live"));
    source.addEventListener("request", (ev) => {
      const { id, html } = JSON.parse(ev.data);
      if (paused()) {
        waiting.push([id, html]);
        banner.hidden = false;
        banner.querySelector("span").textContent = String(waiting.length);
      } else {
        place(id, html);
      }
    });
    source.onopen = () => { status.textContent = "live"; };
    source.onerror = () => { status.textContent = "reconnecting…"; };
  };
  const close = () => {
    if (source) source.close();
    source = null;
    status.textContent = "paused";
  };
  banner.querySelector("button").addEventListener("click", flush);
  window.addEventListener("scroll", () => { if (!paused() && waiting.length) flush(); });
  toggle.addEventListener("change", () => (toggle.checked ? open() : close()));
  if (toggle.checked) open();
}

document.querySelectorAll("table[data-live]").forEach(startLive);

// The live event log: entries arrive as the API's JSON and are written in as text.
function startEvents(table) {
  const body = table.tBodies[0];
  const toggle = document.getElementById("live-toggle");
  const status = document.getElementById("live-status");
  let source = null;
  const cell = (text, cls) => {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    return td;
  };
  const add = (e) => {
    if (body.querySelector(`tr[data-event="${e.id}"]`)) return;
    const empty = body.querySelector("tr.no-rows");
    if (empty) empty.remove();
    const row = document.createElement("tr");
    row.dataset.event = String(e.id);
    row.className = "fresh";
    row.appendChild(cell(e.at.replace("T", " ").slice(0, 19) + " UTC", "nowrap"));
    const sev = cell("");
    const badge = document.createElement("span");
    badge.className = "badge " + e.severity;
    badge.textContent = e.severity;
    sev.appendChild(badge);
    row.appendChild(sev);
    row.appendChild(cell(e.source));
    row.appendChild(cell(e.message));
    row.appendChild(cell(e.channel_id || "", "hide-narrow"));
    body.insertBefore(row, body.firstElementChild);
  };
  const open = () => {
    source = new EventSource(table.getAttribute("data-events-live"));
    source.onmessage = (ev) => add(JSON.parse(ev.data));
    source.onopen = () => { status.textContent = "live"; };
    source.onerror = () => { status.textContent = "reconnecting…"; };
  };
  toggle.addEventListener("change", () => {
    if (toggle.checked) { open(); } else { if (source) source.close(); status.textContent = "paused"; }
  });
  open();
}

document.querySelectorAll("table[data-events-live]").forEach(startEvents);
