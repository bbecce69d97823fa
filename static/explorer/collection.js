// One collection: its jobs, then every source as a card with a thumbnail (its
// middle frame), status, and the error or warning that explains a failure.
"use strict";

const list = document.getElementById("sources");
const collectionId = list.dataset.collection;
const pageSize = 100;
let shown = pageSize;

function basename(path) {
  return path.split("/").pop();
}

function sourceCard(source) {
  const card = document.createElement("li");
  card.className = `source status-${source.status}`;
  card.dataset.source = source.id;
  if (source.status === "ready" && source.frame_count > 0) {
    const image = document.createElement("img");
    image.loading = "lazy";
    image.alt = basename(source.path);
    image.src = `/frames/${source.id}/${Math.floor(source.frame_count / 2)}.jpg`;
    card.append(image);
  } else {
    const placeholder = document.createElement("div");
    placeholder.className = "placeholder";
    placeholder.textContent = source.status === "failed" ? "✕" : `${Math.round(source.progress * 100)}%`;
    card.append(placeholder);
  }
  const name = document.createElement("div");
  name.className = "name";
  name.title = source.path;
  name.textContent = basename(source.path);
  const facts = document.createElement("div");
  facts.className = "facts";
  const duration = source.duration ? ` · ${source.duration.toFixed(1)} s` : "";
  facts.textContent = `${source.kind} · ${source.status} · ${source.frame_count} frame(s)${duration}`;
  card.append(name, facts);
  for (const [kind, text] of [["error", source.error], ["warning", source.warning]]) {
    if (!text) continue;
    const note = document.createElement("div");
    note.className = kind;
    note.textContent = text;
    card.append(note);
  }
  return card;
}

async function refresh() {
  const [collection, sources, jobs, posters] = await Promise.all([
    getJSON(`/api/collections/${collectionId}/`),
    getPages(`/api/sources/?collection=${collectionId}&limit=${Math.min(shown, 1000)}`, shown),
    getJSON(`/api/jobs/?collection=${collectionId}&limit=3`),
    getJSON(`/api/posters/?collection=${collectionId}&limit=50`),
  ]);
  document.getElementById("posters").replaceChildren(...posters.results.map((poster) => posterElement(poster)));
  document.getElementById("posters-heading").hidden = posters.count === 0;
  document.getElementById("jobs").replaceChildren(
    embeddingElement(collection.embedding), ...jobs.results.map((job) => jobElement(job, { files: true })));
  list.replaceChildren(...sources.rows.map(sourceCard));
  document.getElementById("more").hidden = sources.count <= shown;
  const busy = jobs.results.some((job) => !job.finished_at);
  setTimeout(() => refresh().catch(console.error), busy ? 1000 : 10000);
}

document.querySelector("#more button").addEventListener("click", () => {
  shown += pageSize;
  refresh().catch(console.error);
});
refresh().catch(console.error);
