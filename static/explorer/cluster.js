// A cluster's gallery: its members as thumbnails, a page at a time, nearest its centre
// first and outliers last. Thumbnails are selected (click toggles one, shift-click a range
// from the last one clicked, a rectangle dragged over the grid every one it touches; shift
// adds), and editors label or unlabel the selection, name the whole cluster, merge it with
// another, split it, or undo. Merges and splits renumber the clusters: the page then goes
// to the cluster they made and says so.
"use strict";

const head = document.getElementById("cluster-head");
const collectionId = head.dataset.collection;
const clusterId = parseInt(head.dataset.cluster, 10);
const clustersApi = `/api/collections/${collectionId}/clusters/`;
const labelsApi = `/api/collections/${collectionId}/labels/`;
const PAGE_SIZE = 60;
const NOTE_KEY = "explorer-cluster-note"; // what the page before a renumbering had to say

const grid = document.getElementById("grid");
const byId = (id) => document.getElementById(id);
const withCopies = () => byId("with-copies").checked; // labels go to the frames' copies too (duplicates.js)

let page = Math.max(1, parseInt(new URLSearchParams(location.search).get("page"), 10) || 1);
let pages = 1;
let members = []; // this page's members, as the API gives them
let cluster = null; // this cluster, as the API gives it
let clusteringId = null; // the grouping the page shows: a change means the numbers changed
const act = actions("#cluster-tools button, #label-form button", showError, markSelection);
const selection = new GallerySelection(grid, { pageFrames: () => members.map((member) => member.frame),
  count: byId("selected-count"), changed: enableSelectionButtons });

// --- messages ---

function showError(text) {
  const box = byId("message");
  box.textContent = text;
  box.hidden = !text;
}

// A note: text, then optional links to clusters ({ id, text }).
function showNote(text, links = []) {
  const box = byId("note");
  box.replaceChildren(text, ...links.flatMap((link, i) => [i ? ", " : " ",
    element("a", { href: galleryUrl(link.id), textContent: link.text })]));
  box.hidden = !text;
}

function galleryUrl(id, pageNumber = 1) {
  return `/collections/${collectionId}/clusters/${id}/` + (pageNumber > 1 ? `?page=${pageNumber}` : "");
}

function clusterName(c) {
  return c.label === null ? `#${c.id}` : `#${c.id} ${c.label}`;
}

// --- the cluster and a page of its members ---

async function loadPage() {
  let data;
  try {
    data = await getJSON(`${clustersApi}${clusterId}/?page=${page}&page_size=${PAGE_SIZE}`);
  } catch (error) {
    if (error.status === 404 && page > 1) { // fewer pages now (a relabel does not change that; a regrouping does)
      page = 1;
      return loadPage();
    }
    showHeadError(error);
    return;
  }
  if (clusteringId !== null && data.clustering !== clusteringId) {
    // Clustered again meanwhile: this number now names another cluster's members.
    showNote("The clusters were made again since this page was loaded: cluster numbers have changed.");
  }
  clusteringId = data.clustering;
  cluster = data.cluster;
  pages = data.pages;
  page = Math.min(data.page, pages);
  members = data.members;
  selection.newPage();
  history.replaceState(null, "", galleryUrl(clusterId, page) + location.hash);
  showHead(data);
  showMembers();
}

function showHeadError(error) {
  byId("cluster-label").textContent = error.status === 409 ? "no clusters yet" : "not found";
  byId("cluster-facts").replaceChildren(errorText(error), " ",
    element("a", { href: `/collections/${collectionId}/`, textContent: "see the collection's clusters" }));
  grid.replaceChildren();
  for (const control of document.querySelectorAll("main button, main input")) control.disabled = true;
}

function showHead(data) {
  const label = byId("cluster-label");
  label.textContent = cluster.label === null ? "unnamed" : cluster.label;
  label.classList.toggle("unnamed", cluster.label === null);
  const image = byId("exemplar");
  image.src = cluster.exemplar.image;
  image.alt = `exemplar: ${cluster.exemplar.name} at ${clock(cluster.exemplar.time)}`;
  image.title = image.alt;
  image.hidden = false;
  const facts = [`${cluster.size} frame(s)`, `cohesion ${cluster.cohesion.toFixed(2)}`,
    `${cluster.outliers} outlier(s)`];
  if (cluster.labelled) {
    facts.push(cluster.label !== null && cluster.label_frames < cluster.labelled
      ? `${cluster.labelled} labelled, ${cluster.label_frames} as the cluster's label` : `${cluster.labelled} labelled`);
  }
  if (cluster.small) facts.push("a small cluster");
  byId("cluster-facts").textContent = facts.join(" · ");
  document.title = `Cluster ${cluster.id}${cluster.label === null ? "" : ` (${cluster.label})`} · ` +
    document.title.split(" · ").slice(1).join(" · ");
  byId("map-link").href = mapLink(cluster);
  showPager(page, pages, `page ${page} of ${pages} · ${data.count} member(s)`);
}

// The map centred on the cluster, at a zoom where its outline fills a good part of the window.
function mapLink(c) {
  const xs = c.outline.map((p) => p[0]);
  const ys = c.outline.map((p) => p[1]);
  const extent = Math.max(0.02, Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys));
  const zoom = Math.max(0, Math.min(8, Math.floor(Math.log2(4 / extent))));
  return `/collections/${collectionId}/map/#z=${zoom}&x=${c.centre[0].toFixed(4)}&y=${c.centre[1].toFixed(4)}&clusters=1`;
}

function showMembers() {
  const items = [];
  members.forEach((member, index) => {
    if (member.outlier && (index === 0 || !members[index - 1].outlier)) {
      items.push(element("div", { className: "divider", role: "presentation",
        textContent: "Outliers: members far from the others" }));
    }
    items.push(memberElement(member, index));
  });
  if (!members.length) items.push(element("p", { className: "message", textContent: "No members on this page." }));
  grid.replaceChildren(...items);
  markSelection();
}

function memberElement(member, index) {
  const chips = element("div", { className: "chips" });
  if (member.label !== null) {
    const chip = element("span", { className: "chip", textContent: member.label, title: `label: ${member.label}` });
    chip.classList.toggle("other", cluster.label !== null && member.label !== cluster.label);
    chips.append(chip);
  }
  const item = galleryItem(member.frame, index, chips);
  item.classList.toggle("outlier", member.outlier);
  if (member.outlier) {
    item.querySelector(".thumb").append(element("span", { className: "outlier-mark", textContent: "outlier" }));
  }
  item.title += (member.label !== null ? ` · ${member.label}` : "") + (member.outlier ? " · outlier" : "") +
    ` · distance to the exemplar ${member.distance.toFixed(3)}`;
  return item;
}

// --- selection (common.js: GallerySelection) ---

function markSelection() {
  selection.mark();
}

function enableSelectionButtons() {
  const none = selection.selected.size === 0 || act.busy();
  byId("label-selected").disabled = none;
  byId("unlabel-selected").disabled = none;
  byId("label-videos").disabled = none;
  byId("select-clear").disabled = selection.selected.size === 0;
}

byId("select-page").addEventListener("click", () => selection.selectPage());
byId("select-clear").addEventListener("click", () => selection.clear());

// --- pages ---

function goToPage(number) {
  page = Math.max(1, Math.min(pages, number));
  loadPage().catch((error) => showError(errorText(error)));
}

byId("page-prev").addEventListener("click", () => goToPage(page - 1));
byId("page-next").addEventListener("click", () => goToPage(page + 1));

// --- labels and the history ---

async function loadLabels() {
  const data = await getJSON(labelsApi);
  byId("label-names").replaceChildren(...data.labels.map((label) => element("option", { value: label.name })));
  byId("recent-actions").replaceChildren(...data.actions.slice(0, 8).map(actionElement));
  if (!data.actions.length) {
    byId("recent-actions").append(element("li", { className: "message", textContent: "none yet" }));
  }
  const next = data.actions.find((action) => !action.undone_at); // what Undo would take back
  byId("undo").title = next ? `undo the collection's last change: ${next.description} (${next.who || "someone"})`
    : "nothing to undo";
  return data;
}

function labelName() {
  const name = byId("label-name").value.trim();
  if (!name) {
    byId("label-name").focus();
    throw new Error("Type a label first (or pick one of the collection's).");
  }
  return name;
}

// The clusters the page was made for, still current? Numbers change with every regrouping,
// and a cluster's number then names other frames: refuse rather than label those.
async function stillCurrent() {
  const now = await getJSON(clustersApi);
  if (clusteringId !== null && now.clustering.id !== clusteringId) {
    throw new Error("The clusters were made again since this page was loaded, and their numbers changed: " +
      "reload the page, or go back to the collection's clusters.");
  }
  return now;
}

async function afterLabelling(action) {
  showNote(`Done: ${action.description} (${action.frames} frame(s) changed).`);
  await Promise.all([loadPage(), loadLabels()]);
}

byId("label-form").addEventListener("submit", (event) => {
  event.preventDefault();
  act(async () => {
    const name = labelName();
    const action = await postJSON(labelsApi, { label: name, frames: selection.frames(), with_copies: withCopies() });
    selection.selected.clear();
    await afterLabelling(action);
  });
});

byId("unlabel-selected").addEventListener("click", () => act(async () => {
  const action = await postJSON(labelsApi, { label: null, frames: selection.frames(), with_copies: withCopies() });
  selection.selected.clear();
  await afterLabelling(action);
}));

// Every frame of the selected frames' videos, one action per video (each undone on its own).
byId("label-videos").addEventListener("click", () => act(async () => {
  const name = labelName();
  const sources = [...new Set(selection.frames().map(([source]) => source))];
  let changed = 0;
  for (const source of sources) changed += (await postJSON(labelsApi, { label: name, source, with_copies: withCopies() })).frames;
  selection.selected.clear();
  showNote(`Done: labelled every frame of ${sources.length} video(s) as '${name}' (${changed} frame(s) changed).`);
  await Promise.all([loadPage(), loadLabels()]);
}));

byId("name-cluster").addEventListener("click", () => act(async () => {
  const name = labelName();
  await stillCurrent();
  await afterLabelling(await postJSON(labelsApi, { label: name, cluster: clusterId, clustering: clusteringId ?? undefined,
    with_copies: withCopies() }));
}));

byId("undo").addEventListener("click", () => act(async () => {
  const before = await getJSON(clustersApi).catch(() => null);
  const action = await postJSON(`${labelsApi}undo/`, {});
  if (action.kind === "merge" || action.kind === "split") {
    await goToRegrouped(before, `Undone: ${action.description}.`);
    return;
  }
  showNote(`Undone: ${action.description}.`);
  await Promise.all([loadPage(), loadLabels()]);
}));

// --- merge and split: jobs that renumber the clusters ---

byId("merge-form").addEventListener("submit", (event) => {
  event.preventDefault();
  act(async () => {
    const other = parseInt(byId("merge-with").value, 10);
    if (!Number.isInteger(other) || other < 0) throw new Error("Give the number of the cluster to merge with.");
    if (other === clusterId) throw new Error("A cluster cannot be merged with itself: give another number.");
    const before = await stillCurrent();
    if (other >= before.clusters.length) {
      throw new Error(`There is no cluster #${other}: the clusters are #0 to #${before.clusters.length - 1}.`);
    }
    const job = await postJSON(`${clustersApi}merge/`, { clusters: [clusterId, other], clustering: clusteringId ?? undefined });
    await finishRegrouping(job, before, `Merged clusters #${clusterId} and #${other}.`);
  });
});

byId("split-form").addEventListener("submit", (event) => {
  event.preventDefault();
  act(async () => {
    const k = parseInt(byId("split-k").value, 10);
    const before = await stillCurrent();
    const job = await postJSON(`${clustersApi}${clusterId}/split/`, { k, clustering: clusteringId ?? undefined });
    await finishRegrouping(job, before, `Split cluster #${clusterId} in ${k}.`);
  });
});

async function finishRegrouping(job, before, done) {
  job = await followJob(job, byId("jobs"));
  if (job.status !== "succeeded") throw new Error(job.error || `The job ended ${job.status}.`);
  await goToRegrouped(before, done);
}

// After the clusters were renumbered: the clusters that are new (a cluster untouched keeps
// its size and its exemplar), the largest of them opened, and a note that says where the
// others went.
async function goToRegrouped(before, done) {
  const after = await getJSON(clustersApi);
  const signature = (c) => `${c.size}:${c.exemplar.source}:${c.exemplar.frame}`;
  const old = new Set(((before && before.clusters) || []).map(signature));
  const made = after.clusters.filter((c) => !old.has(signature(c)));
  const target = made.length ? made[0] : after.clusters[0];
  const note = { text: `${done} Cluster numbers have changed: ` + (made.length
    ? `${made.length === 1 ? "it is" : "they are"} now` : "cluster #0 is shown."),
  links: made.map((c) => ({ id: c.id, text: `${clusterName(c)} (${c.size})` })) };
  sessionStorage.setItem(NOTE_KEY, JSON.stringify(note));
  if (target.id === clusterId) location.reload();
  else location.assign(galleryUrl(target.id));
}

// --- start ---

async function start() {
  hideEditorOnly();
  const saved = sessionStorage.getItem(NOTE_KEY);
  if (saved) {
    sessionStorage.removeItem(NOTE_KEY);
    const note = JSON.parse(saved);
    showNote(note.text, note.links);
  }
  const [all] = await Promise.all([getJSON(clustersApi).catch(() => null), loadPage(), loadLabels()]);
  if (all) {
    clusteringId = all.clustering.id;
    byId("merge-with").max = all.clusters.length - 1;
    if (all.clusters.length > 1) byId("merge-with").placeholder = clusterId === 0 ? "1" : "0";
    else { // nothing to merge with
      for (const control of byId("merge-form").elements) control.disabled = true;
      byId("merge-form").title = "This is the only cluster: there is none to merge it with.";
    }
  }
  markSelection();
}

start().catch((error) => showError(errorText(error)));
