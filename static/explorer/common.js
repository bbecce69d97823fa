// Shared by the pages: fetching JSON and drawing a job with its progress bar.
"use strict";

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

// A POST of JSON with the CSRF token the page's cookie holds (explorer/access.py checks it);
// throws with the server's reason when it refuses.
async function postJSON(url, body) {
  const token = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="));
  const response = await fetch(url, { method: "POST", body: JSON.stringify(body), headers: {
    "Content-Type": "application/json", Accept: "application/json",
    "X-CSRFToken": token ? decodeURIComponent(token.split("=")[1]) : "" } });
  const data = await response.json();
  if (!response.ok) throw new Error(data.detail || JSON.stringify(data));
  return data;
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

function jobElement(job) {
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
  return div;
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
  const variance = (embedding.explained_variance * 100).toFixed(0);
  div.textContent = `map of ${embedding.frames} frame(s) · PCA keeps ${variance}% of the variance`;
  if (embedding.random_weights) div.append(" ", randomWeightsBadge());
  return div;
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
