// One collection: its jobs, its clusters (each opening its gallery; editors group again),
// its labels (export, import), its tagger (tagger.js), then every source as a card with a thumbnail (its middle
// frame), status, and the error or warning that explains a failure.
"use strict";

const list = document.getElementById("sources");
const collectionId = list.dataset.collection;
const pageSize = 100;
let shown = pageSize;
let refreshTimer = null;
let jobsSeen = null; // the jobs and whether they ended, at the last refresh: clusters change when they do
const CLUSTERS_SHOWN = 24; // then "Show all"
let allClusters = false;
const clustersApi = `/api/collections/${collectionId}/clusters/`;
const labelsApi = `/api/collections/${collectionId}/labels/`;

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
  const seen = jobs.results.map((job) => `${job.id}:${job.finished_at || ""}`).join(",");
  if (seen !== jobsSeen) { // a job started or ended: the clusters and labels may be new
    jobsSeen = seen;
    await Promise.all([showClusters(), showLabels(), showTagger()]);
  }
  scheduleRefresh(busy ? 1000 : 10000);
}

// One timer: a refresh asked for by a button replaces the one waiting.
function scheduleRefresh(delay) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => refresh().catch((error) => {
    console.error(error);
    scheduleRefresh(10000);
  }), delay);
}

// --- clusters ---

async function showClusters() {
  const summary = document.getElementById("clustering-summary");
  const cards = document.getElementById("clusters");
  let data;
  try {
    data = await getJSON(clustersApi);
  } catch (error) {
    summary.textContent = error.status === 409 ? `No clusters yet: ${errorText(error)}.` : errorText(error);
    cards.replaceChildren();
    document.getElementById("clusters-more").hidden = true;
    return;
  }
  const { clustering } = data;
  const params = clustering.params;
  const method = { auto: "auto", kmeans: `k-means (k = ${params.k})`, affinity: "affinity propagation" }[params.method]
    || params.method;
  const edit = clustering.edit && clustering.edit.edit ? `, then a ${clustering.edit.edit}` : "";
  summary.textContent = `${clustering.clusters} cluster(s) by ${method} over ${params.over || "frames"}${edit}` +
    ` · ${clustering.outliers} outlier frame(s)` + (clustering.current_map ? "" : " · made from an earlier map");
  const shownClusters = allClusters ? data.clusters : data.clusters.slice(0, CLUSTERS_SHOWN);
  cards.replaceChildren(...shownClusters.map(clusterCard));
  const more = document.getElementById("clusters-more");
  more.hidden = data.clusters.length <= shownClusters.length;
  more.querySelector("button").textContent = `Show all ${data.clusters.length}`;
  const form = document.getElementById("cluster-form");
  if (!form.dataset.filled) { // the form starts from the current grouping's settings
    form.dataset.filled = "1";
    for (const name of ["method", "k", "preference", "damping", "over"]) {
      if (params[name] !== undefined && params[name] !== null) form.elements[name].value = params[name];
    }
    showMethodFields();
  }
}

function clusterCard(cluster) {
  const named = cluster.label !== null;
  const image = element("img", { src: cluster.exemplar.image, loading: "lazy",
    alt: `exemplar of cluster ${cluster.id}: ${cluster.exemplar.name}` });
  const link = element("a", { className: "cluster-card" + (cluster.small ? " small" : ""),
    href: `/collections/${collectionId}/clusters/${cluster.id}/`,
    title: `cohesion ${cluster.cohesion.toFixed(2)} · ${cluster.outliers} outlier(s)` +
      (cluster.labelled ? ` · ${cluster.labelled} labelled` : "") },
  image, element("span", { className: "title" },
    element("span", { className: "id", textContent: `#${cluster.id}` }), " ",
    element("span", { className: named ? "name" : "name unnamed", textContent: named ? cluster.label : "unnamed" })),
  element("span", { className: "size", textContent: `${cluster.size} frame(s)` + (cluster.small ? " · small" : "") +
    (cluster.labelled && cluster.labelled < cluster.size ? ` · ${cluster.labelled} labelled` : "") }));
  const item = element("li", {}, link);
  item.dataset.cluster = cluster.id;
  return item;
}

function showMethodFields() {
  const form = document.getElementById("cluster-form");
  for (const label of form.querySelectorAll("[data-method]")) {
    label.hidden = label.dataset.method !== form.elements.method.value;
  }
}

document.getElementById("cluster-form").addEventListener("change", showMethodFields);
document.getElementById("cluster-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const button = form.querySelector("button[type=submit]");
  const body = { method: form.elements.method.value, over: form.elements.over.value };
  if (body.method === "kmeans") body.k = parseInt(form.elements.k.value, 10);
  if (body.method === "affinity") {
    if (form.elements.preference.value !== "") body.preference = parseFloat(form.elements.preference.value);
    body.damping = parseFloat(form.elements.damping.value);
  }
  await runJob(button, document.getElementById("cluster-job"), document.getElementById("cluster-message"),
    () => postJSON(clustersApi, body), () => Promise.all([showClusters(), showLabels()]).catch(console.error));
});

document.querySelector("#clusters-more button").addEventListener("click", () => {
  allClusters = true;
  showClusters().catch(console.error);
});

// --- labels ---

async function showLabels() {
  const data = await getJSON(labelsApi);
  const counts = document.getElementById("label-counts");
  const used = data.labels.filter((label) => label.frames > 0);
  if (!used.length) {
    counts.textContent = "No labels yet: name clusters, or select frames in a cluster's gallery and label them.";
    return;
  }
  counts.replaceChildren(...used.flatMap((label, i) => [i ? " " : "",
    element("span", { className: "chip", textContent: label.name }),
    element("span", { className: "label-count", textContent: ` ${label.frames}` })]));
}

document.getElementById("import-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const result = document.getElementById("import-result");
  const button = form.querySelector("button");
  button.disabled = true;
  result.replaceChildren(element("span", { className: "message", textContent: "importing…" }));
  try {
    const done = await postForm(`${labelsApi}import/`, new FormData(form));
    const rows = done.skipped.map((row) => element("li", {
      textContent: `line ${row.line}: ${row.source || "(no source)"} at ${row.timestamp ?? "(no time)"}: ${row.reason}` }));
    result.replaceChildren(element("p", { className: "import-summary",
      textContent: `${done.labelled} labelled, ${done.skipped.length} skipped` }));
    if (rows.length) result.append(element("ul", { className: "skipped-rows" }, ...rows));
    form.reset();
    await Promise.all([showLabels(), showClusters(), showTagger()]);
  } catch (error) {
    result.replaceChildren(element("p", { className: "error", textContent: errorText(error) }));
  } finally {
    button.disabled = false;
  }
});

hideEditorOnly();

document.querySelector("#more button").addEventListener("click", () => {
  shown += pageSize;
  refresh().catch(console.error);
});
refresh().catch((error) => {
  console.error(error);
  scheduleRefresh(10000);
});
