// Shared by the pages: fetching JSON and drawing a job with its progress bar.
"use strict";

// Throws an Error carrying the HTTP `status` and the server's `detail` (every API error
// has one, explorer/api_errors.py), so a page can say why, not only that, it failed.
async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  if (!response.ok) {
    const error = new Error(`${url}: HTTP ${response.status}`);
    error.status = response.status;
    error.detail = await response.json().then((data) => data.detail).catch(() => undefined);
    throw error;
  }
  return response.json();
}

function csrfToken() {
  const token = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="));
  return token ? decodeURIComponent(token.split("=")[1]) : "";
}

// A POST of JSON with the CSRF token the page's cookie holds (explorer/access.py checks it);
// throws with the server's reason when it refuses.
async function postJSON(url, body) {
  return postBody(url, JSON.stringify(body), { "Content-Type": "application/json" });
}

// A POST of a form (multipart: a file upload), with the CSRF token like postJSON.
async function postForm(url, formData) {
  return postBody(url, formData, {});
}

async function postBody(url, body, headers) {
  const response = await fetch(url, { method: "POST", body, headers: {
    ...headers, Accept: "application/json", "X-CSRFToken": csrfToken() } });
  const data = await response.json().catch(() => ({ detail: `HTTP ${response.status}` }));
  if (!response.ok) {
    const error = new Error(data.detail || JSON.stringify(data));
    error.status = response.status;
    throw error;
  }
  return data;
}

// The text of an error for the person: the server's reason when it gave one.
function errorText(error) {
  return error.detail || error.message || String(error);
}

// A DOM element with properties and children; strings become text nodes, never HTML:
// every name on these pages comes from users' files and labels.
function element(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

// Seconds as m:ss.s
function clock(seconds) {
  seconds = Math.max(0, seconds); // a time refined to -0.01 s is the start
  const minutes = Math.floor(seconds / 60);
  return `${minutes}:${(seconds - minutes * 60).toFixed(1).padStart(4, "0")}`;
}

// Text for Leaflet's tooltips, which take a string as HTML: names come from users' files.
function textElement(text) {
  const span = document.createElement("span");
  span.textContent = text;
  return span;
}

// The rows of a paginated list (the API answers { count, next, previous, results } a page
// of at most 1000 at a time), following `next` until there is none or `atMost` are read.
// Returns { rows, count }, count being the whole list's.
async function getPages(url, atMost = Infinity) {
  const rows = [];
  let count = 0;
  for (let next = url; next && rows.length < atMost;) {
    const page = await getJSON(next);
    rows.push(...page.results);
    ({ count, next } = page);
  }
  return { rows: rows.slice(0, atMost), count };
}

// A job: its kind, status, stage and message, a progress bar and a cancel button while it
// runs, its error. With `files`, the files that failed and those skipped, by name (the job's
// page; a list of jobs gives their number in the message only).
function jobElement(job, { files = false } = {}) {
  const div = document.createElement("div");
  div.className = `job status-${job.status}`;
  div.dataset.job = job.id;
  const label = document.createElement("div");
  label.className = "label";
  label.textContent = `${job.kind} #${job.id}: ${job.status}` +
    (job.finished_at ? "" : ` (${job.stage})`) + (job.message ? ` — ${job.message}` : "");
  div.append(label);
  if (!job.finished_at) {
    const bar = document.createElement("progress");
    bar.max = 1;
    bar.value = job.progress;
    div.append(bar, " ", cancelButton(job, div));
  }
  if (job.error) {
    const error = document.createElement("div");
    error.className = "error";
    error.textContent = job.error;
    div.append(error);
  }
  if (files) {
    // A file's error names it already, most of the time.
    const failed = (job.failed || []).map((f) => (f.error.startsWith(f.path) ? f.error : `${f.path}: ${f.error}`));
    if (failed.length) div.append(fileList(job, "failed", failed));
    const skipped = (job.skipped || []).map((s) => `${s.path}: ${s.reason}`);
    if (skipped.length) div.append(fileList(job, "skipped", skipped));
  }
  return div;
}

// Shows a job in `box` with its progress until it finishes; returns the finished job.
async function followJob(job, box) {
  for (;;) {
    box.replaceChildren(jobElement(job));
    if (job.finished_at) return job;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    job = await getJSON(`/api/jobs/${job.id}/`);
  }
}

// A form's button starts a job: the button is held until the job ends, the job shown in `box`
// with its progress (cleared when it succeeds), and a refusal or a job that did not succeed
// said in `message` (hidden when there is nothing to say). `start()` posts and returns the
// job; `after()` redraws what the job changed.
async function runJob(button, box, message, start, after) {
  message.hidden = true;
  button.disabled = true;
  try {
    const job = await followJob(await start(), box);
    if (job.status !== "succeeded") throw new Error(job.error || `The ${job.kind} job ended ${job.status}.`);
    box.replaceChildren();
  } catch (error) {
    message.textContent = errorText(error);
    message.hidden = false;
  } finally {
    button.disabled = false;
    await after();
  }
}

const FILES_SHOWN = 10; // then "and N more", which opens the rest
const openFileLists = new Set(); // those the user opened stay open as the page redraws the job

function fileList(job, kind, lines) {
  const box = document.createElement("div");
  box.className = `files ${kind}`;
  const item = (text) => Object.assign(document.createElement("li"), { textContent: text });
  const first = document.createElement("ul");
  first.append(...lines.slice(0, FILES_SHOWN).map(item));
  box.append(`${lines.length} file(s) ${kind}:`, first);
  if (lines.length > FILES_SHOWN) {
    const key = `${job.id}/${kind}`;
    const more = document.createElement("details");
    more.open = openFileLists.has(key);
    more.addEventListener("toggle", () => (more.open ? openFileLists.add(key) : openFileLists.delete(key)));
    const summary = document.createElement("summary");
    summary.textContent = `and ${lines.length - FILES_SHOWN} more`;
    const rest = document.createElement("ul");
    rest.append(...lines.slice(FILES_SHOWN).map(item));
    more.append(summary, rest);
    box.append(more);
  }
  return box;
}

// Cancels the job; the job then shows as it ended (the pages redraw it as they poll).
function cancelButton(job, shown) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "cancel";
  button.textContent = "cancel";
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      shown.replaceWith(jobElement(await postJSON(`/api/jobs/${job.id}/cancel/`, {})));
    } catch (error) {
      // Refused: it may have finished meanwhile (409); show the job as it is now.
      button.title = error.message;
      const now = await getJSON(`/api/jobs/${job.id}/`).catch(() => null);
      if (now && now.finished_at) shown.replaceWith(jobElement(now));
      else button.disabled = false;
    }
  });
  return button;
}

// What the collection's map is made of, and a warning when it was made with random
// Xception weights (a demo: it groups colour and texture, not content).
function embeddingElement(embedding) {
  const div = document.createElement("div");
  div.className = "embedding";
  if (!embedding || !embedding.frames) {
    div.textContent = "no map yet";
    return div;
  }
  div.textContent = `map of ${embedding.frames} frame(s) · PCA keeps ${sharePercent(embedding.explained_variance)} ` +
    "of the variance";
  if (embedding.random_weights) div.append(" ", randomWeightsBadge());
  return div;
}

// A share (0 to 1) as a percentage that does not round up to a claim: 0.9996 is "more than
// 99.9%", not "100%" (PCA keeps all of the variance only when there are fewer frames than
// components, and then float sums still land a hair under or over 1).
function sharePercent(share) {
  if (share >= 0.9995) return "more than 99.9%";
  return `${(Math.floor(share * 1000 + 1e-9) / 10).toFixed(1)}%`; // down: never more than it is
}

// A poster: its size and format, its job's progress while it renders, then a download link.
function posterElement(poster, onAgain) {
  const item = document.createElement("li");
  item.className = "poster";
  item.dataset.poster = poster.id;
  const p = poster.params;
  const title = document.createElement("span");
  title.textContent = `#${poster.id} · ${p.columns}×${p.rows} ${p.format.toUpperCase()} ${p.quality}` +
    (poster.width ? ` · ${poster.width}×${poster.height} px · ${(poster.size_mm[0] / 10).toFixed(0)}×` +
      `${(poster.size_mm[1] / 10).toFixed(0)} cm at ${p.dpi} dpi` : "");
  item.append(title);
  if (poster.download) {
    const link = document.createElement("a");
    link.href = poster.download;
    link.textContent = "download";
    link.className = "download";
    item.append(" ", link);
  }
  if (poster.job) item.append(jobElement(poster.job));
  if (onAgain && poster.job && poster.job.finished_at) {
    const again = document.createElement("button");
    again.type = "button";
    again.textContent = "render again";
    again.addEventListener("click", () => onAgain(poster));
    item.append(again);
  }
  return item;
}

function randomWeightsBadge() {
  const badge = document.createElement("span");
  badge.className = "badge random-weights";
  badge.title = "XCEPTION_WEIGHTS=random: for tests and demos; similar frames are grouped by colour and texture only";
  badge.textContent = "random weights: demo map";
  return badge;
}

// --- galleries: pages of frame thumbnails to select (a cluster's members, the frames to review) ---

function frameKey(frame) {
  return `${frame.source}:${frame.frame}`;
}

// A frame's thumbnail: its image with a check mark, its video's name and time; `below`
// (elements: chips) under them. Selection finds it by data-index (its place on the page).
function galleryItem(frame, index, ...below) {
  const when = clock(frame.time);
  const item = element("div", { className: "member", role: "option", tabIndex: index === 0 ? 0 : -1,
    title: `${frame.name} at ${when}` });
  item.dataset.index = index;
  item.dataset.key = frameKey(frame);
  const check = element("span", { className: "check", textContent: "✓" });
  check.setAttribute("aria-hidden", "true");
  item.append(element("div", { className: "thumb" },
    element("img", { src: frame.image, alt: `${frame.name} at ${when}`, loading: "lazy", draggable: false }), check),
  element("div", { className: "caption" },
    element("span", { className: "name", textContent: frame.name, title: frame.name }),
    element("span", { className: "time", textContent: when })), ...below);
  return item;
}

// The selection of a gallery's `grid`: a click toggles a thumbnail, shift-click selects the
// range from the last one clicked, a rectangle dragged over the grid every one it touches
// (shift adds to the selection); arrows move, space or enter toggles (with shift: the range),
// ctrl+A takes the page. Frames stay selected across pages. `pageFrames()` gives the frames
// of the page shown, in the grid's order; `count` (an element) says how many are selected;
// `changed()` follows every change.
class GallerySelection {
  constructor(grid, { pageFrames, count, changed = () => {} }) {
    Object.assign(this, { grid, pageFrames, count, changed });
    this.selected = new Map(); // "source:frame" -> [source, frame]
    this.anchor = null; // index on the page of the last thumbnail clicked: shift-click's start
    this.drag = null;
    this.suppressClick = false; // the click that ends a box selection selects nothing more
    grid.addEventListener("click", (event) => this.onClick(event));
    grid.addEventListener("keydown", (event) => this.onKey(event));
    grid.addEventListener("pointerdown", (event) => {
      if (event.button !== 0 || event.pointerType === "touch") return; // touch scrolls
      this.drag = { x: event.pageX, y: event.pageY, additive: event.shiftKey, base: new Map(this.selected), box: null };
    });
    document.addEventListener("pointermove", (event) => this.onDrag(event));
    document.addEventListener("pointerup", () => {
      if (this.drag && this.drag.box) {
        this.drag.box.remove();
        this.suppressClick = true;
        setTimeout(() => { this.suppressClick = false; }, 0); // past the click this release makes
      }
      this.drag = null;
    });
  }

  items() {
    return [...this.grid.querySelectorAll(".member")];
  }

  frames() {
    return [...this.selected.values()];
  }

  set(frame, on) {
    if (on) this.selected.set(frameKey(frame), [frame.source, frame.frame]);
    else this.selected.delete(frameKey(frame));
  }

  // Shows the selection on the thumbnails and in `count`; to call after the grid is redrawn.
  mark() {
    for (const item of this.items()) {
      const on = this.selected.has(item.dataset.key);
      item.classList.toggle("selected", on);
      item.setAttribute("aria-selected", on ? "true" : "false");
    }
    const shown = new Set(this.pageFrames().map(frameKey));
    const elsewhere = [...this.selected.keys()].filter((key) => !shown.has(key)).length;
    this.count.textContent = `${this.selected.size} selected` + (elsewhere ? ` (${elsewhere} on other pages)` : "");
    this.changed();
  }

  newPage() {
    this.anchor = null;
  }

  clear() {
    this.selected.clear();
    this.anchor = null;
    this.mark();
  }

  selectPage() {
    for (const frame of this.pageFrames()) this.set(frame, true);
    this.mark();
  }

  choose(index, { range = false } = {}) {
    const frames = this.pageFrames();
    if (range && this.anchor !== null) {
      const [from, to] = this.anchor < index ? [this.anchor, index] : [index, this.anchor];
      for (let i = from; i <= to; i++) this.set(frames[i], true);
    } else {
      this.set(frames[index], !this.selected.has(frameKey(frames[index])));
    }
    this.anchor = index;
    this.mark();
  }

  focus(item) {
    for (const other of this.items()) other.tabIndex = -1;
    item.tabIndex = 0;
    item.focus({ preventScroll: false });
  }

  onClick(event) {
    const item = event.target.closest(".member");
    if (this.suppressClick || !item) return;
    this.choose(+item.dataset.index, { range: event.shiftKey });
    this.focus(item);
  }

  onKey(event) {
    const item = event.target.closest(".member");
    if (!item) return;
    const items = this.items();
    const index = +item.dataset.index;
    const columns = getComputedStyle(this.grid).gridTemplateColumns.split(" ").length;
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns, ArrowUp: -columns,
      Home: -index, End: items.length - 1 - index };
    if (event.key in moves) {
      const next = items[Math.max(0, Math.min(items.length - 1, index + moves[event.key]))];
      this.focus(next);
      if (event.shiftKey) this.choose(+next.dataset.index, { range: true });
    } else if (event.key === " " || event.key === "Enter") {
      this.choose(index, { range: event.shiftKey });
    } else if (event.key === "a" && (event.ctrlKey || event.metaKey)) {
      this.selectPage();
    } else {
      return;
    }
    event.preventDefault();
  }

  onDrag(event) {
    const drag = this.drag;
    if (!drag) return;
    if (!drag.box) {
      if (Math.hypot(event.pageX - drag.x, event.pageY - drag.y) < 6) return; // still a click
      drag.box = element("div", { className: "select-box" });
      this.grid.append(drag.box);
    }
    event.preventDefault();
    const area = { left: Math.min(drag.x, event.pageX), right: Math.max(drag.x, event.pageX),
      top: Math.min(drag.y, event.pageY), bottom: Math.max(drag.y, event.pageY) };
    const origin = this.grid.getBoundingClientRect();
    Object.assign(drag.box.style, {
      left: `${area.left - origin.left - scrollX}px`, top: `${area.top - origin.top - scrollY}px`,
      width: `${area.right - area.left}px`, height: `${area.bottom - area.top}px` });
    this.selected.clear();
    if (drag.additive) for (const [key, value] of drag.base) this.selected.set(key, value);
    const frames = this.pageFrames();
    for (const item of this.items()) {
      const r = item.getBoundingClientRect();
      const touches = r.left + scrollX <= area.right && r.right + scrollX >= area.left &&
        r.top + scrollY <= area.bottom && r.bottom + scrollY >= area.top;
      if (touches) this.set(frames[+item.dataset.index], true);
    }
    this.mark();
  }
}

// The previous and next buttons of a gallery's pages and the "page 1 of 3" between them.
function showPager(page, pages, text) {
  document.getElementById("page-of").textContent = text;
  document.getElementById("page-prev").disabled = page <= 1;
  document.getElementById("page-next").disabled = page >= pages;
}

// A label action of the collection's history, as the galleries list them.
function actionElement(action) {
  const when = new Date(action.created_at).toLocaleString();
  const item = element("li", { className: action.undone_at ? "undone" : "" },
    element("span", { className: "what", textContent: action.description }),
    element("span", { className: "who", textContent: ` · ${action.who || "someone"} · ${when}` }));
  if (action.undone_at) item.append(element("span", { className: "badge", textContent: "undone" }));
  return item;
}

// A page's changes, one at a time: `act(work)` runs the async `work` with the buttons that
// `selector` matches held, says its error with `showError`, then calls `after()` (which sets
// the buttons as the selection allows: `act.busy()` is still true then, false after).
function actions(selector, showError, after) {
  let busy = false;
  const act = async (work) => {
    if (busy) return;
    busy = true;
    showError("");
    const buttons = [...document.querySelectorAll(selector)];
    const before = buttons.map((b) => b.disabled);
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await work();
    } catch (error) {
      showError(errorText(error));
    } finally {
      buttons.forEach((b, i) => { b.disabled = before[i]; });
      busy = false;
      after();
    }
  };
  act.busy = () => busy;
  return act;
}

// Hides what only editors may use (the server refuses viewers anyway).
function hideEditorOnly() {
  if (document.body.dataset.role !== "viewer") return;
  for (const node of document.querySelectorAll(".editor-only")) node.hidden = true;
}
