// The collection list: polls the JSON API and shows each collection's jobs with
// a progress bar per running stage.
"use strict";

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

function jobElement(job) {
  const div = document.createElement("div");
  div.className = `job status-${job.status}`;
  const label = document.createElement("div");
  label.className = "label";
  label.textContent = `${job.kind} #${job.id}: ${job.status}` +
    (job.finished_at ? "" : ` (${job.stage})`) + (job.message ? ` — ${job.message}` : "");
  div.append(label);
  if (!job.finished_at) {
    const bar = document.createElement("progress");
    bar.max = 1;
    bar.value = job.progress;
    div.append(bar);
  }
  if (job.error) {
    const error = document.createElement("div");
    error.className = "error";
    error.textContent = job.error;
    div.append(error);
  }
  return div;
}

async function refresh() {
  const [collections, jobs] = await Promise.all([
    getJSON("/api/collections/"), getJSON("/api/jobs/?limit=200"),
  ]);
  const body = document.querySelector("#collections tbody");
  body.replaceChildren();
  document.getElementById("empty").hidden = collections.length > 0;
  for (const collection of collections) {
    const row = body.insertRow();
    row.dataset.collection = collection.id;
    row.insertCell().textContent = collection.name;
    row.insertCell().textContent = collection.source_count;
    row.insertCell().textContent = collection.frame_count ?? 0;
    const work = row.insertCell();
    jobs.results.filter((job) => job.collection === collection.id).slice(0, 3)
      .forEach((job) => work.append(jobElement(job)));
  }
  const busy = jobs.results.some((job) => !job.finished_at);
  setTimeout(() => refresh().catch(console.error), busy ? 1000 : 5000);
}

refresh().catch(console.error);
