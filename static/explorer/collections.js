// The collection list: polls the JSON API and shows each collection's latest jobs
// with a progress bar while they run.
"use strict";

async function refresh() {
  const [collections, jobs] = await Promise.all([
    getPages("/api/collections/?limit=1000").then((found) => found.rows), getJSON("/api/jobs/?limit=200"),
  ]);
  const body = document.querySelector("#collections tbody");
  body.replaceChildren();
  document.getElementById("empty").hidden = collections.length > 0;
  for (const collection of collections) {
    const row = body.insertRow();
    row.dataset.collection = collection.id;
    const link = document.createElement("a");
    link.href = `/collections/${collection.id}/map/`;
    link.textContent = collection.name;
    link.title = "open the map";
    const sources = document.createElement("a");
    sources.href = `/collections/${collection.id}/`;
    sources.textContent = "sources and jobs";
    sources.className = "secondary";
    row.insertCell().append(link, " · ", sources, embeddingElement(collection.embedding));
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
