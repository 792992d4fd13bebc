"use strict";
// camloc web view: the recent events, with thumbnails (served as /events.js; docs/EVENTS.md)
(function () {
  const box = document.getElementById("events");
  if (!box) return;
  function item(e) {
    const div = document.createElement("div");
    div.className = "event";
    if (e.snapshot) {
      const img = document.createElement("img");
      img.src = `events/${e.id}.jpg`;
      img.alt = `${e.label} snapshot`;
      img.loading = "lazy";
      img.width = 120;
      const a = document.createElement("a");
      a.href = e.clip ? `events/${e.id}.mp4` : img.src;
      a.append(img);
      div.append(a);
    }
    const when = new Date(e.start_time * 1000).toLocaleTimeString();
    const dur = e.end_time === null ? "ongoing" : `${(e.end_time - e.start_time).toFixed(1)} s`;
    const text = document.createElement("span");
    text.textContent = ` ${when} ${e.source}: ${e.label} ${e.max_score.toFixed(2)} (${dur})` +
      (e.zones.length ? ` in ${e.zones.join(", ")}` : "") + (e.cut_short ? " cut short" : "");
    div.append(text);
    return div;
  }
  async function poll() {
    try {
      const r = await fetch("api/events?limit=20", {cache: "no-store"});
      if (r.ok) {
        const events = (await r.json()).events;
        if (events.length) box.replaceChildren(...events.map(item));
      }
    } catch (e) { /* the page shows "disconnected" already */ }
    setTimeout(poll, 2000);
  }
  poll();
})();
