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
const editor = document.body.dataset.role !== "viewer";

const grid = document.getElementById("grid");
const byId = (id) => document.getElementById(id);

let page = Math.max(1, parseInt(new URLSearchParams(location.search).get("page"), 10) || 1);
let pages = 1;
let members = []; // this page's members, as the API gives them
let cluster = null; // this cluster, as the API gives it
let clusteringId = null; // the grouping the page shows: a change means the numbers changed
const selected = new Map(); // "source:frame" -> [source, frame], kept across pages
let anchor = null; // index on this page of the last thumbnail clicked: shift-click's start
let busy = false;

const keyOf = (frame) => `${frame.source}:${frame.frame}`;

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
  anchor = null;
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
  byId("page-of").textContent = `page ${page} of ${pages} · ${data.count} member(s)`;
  byId("page-prev").disabled = page <= 1;
  byId("page-next").disabled = page >= pages;
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
  const frame = member.frame;
  const when = clock(frame.time);
  const item = element("div", { className: "member", role: "option", tabIndex: index === 0 ? 0 : -1 });
  item.dataset.index = index;
  item.dataset.key = keyOf(frame);
  item.classList.toggle("outlier", member.outlier);
  const image = element("img", { src: frame.image, alt: `${frame.name} at ${when}`, loading: "lazy", draggable: false });
  const thumb = element("div", { className: "thumb" }, image, element("span", { className: "check", textContent: "✓" }));
  thumb.querySelector(".check").setAttribute("aria-hidden", "true");
  if (member.outlier) thumb.append(element("span", { className: "outlier-mark", textContent: "outlier" }));
  const caption = element("div", { className: "caption" },
    element("span", { className: "name", textContent: frame.name, title: frame.name }),
    element("span", { className: "time", textContent: when }));
  const chips = element("div", { className: "chips" });
  if (member.label !== null) {
    const chip = element("span", { className: "chip", textContent: member.label, title: `label: ${member.label}` });
    chip.classList.toggle("other", cluster.label !== null && member.label !== cluster.label);
    chips.append(chip);
  }
  item.append(thumb, caption, chips);
  item.title = `${frame.name} at ${when}` + (member.label !== null ? ` · ${member.label}` : "") +
    (member.outlier ? " · outlier" : "") + ` · distance to the exemplar ${member.distance.toFixed(3)}`;
  return item;
}

// --- selection ---

function memberItems() {
  return [...grid.querySelectorAll(".member")];
}

function setSelected(member, on) {
  const key = keyOf(member.frame);
  if (on) selected.set(key, [member.frame.source, member.frame.frame]);
  else selected.delete(key);
}

function markSelection() {
  for (const item of memberItems()) {
    const on = selected.has(item.dataset.key);
    item.classList.toggle("selected", on);
    item.setAttribute("aria-selected", on ? "true" : "false");
  }
  const elsewhere = [...selected.keys()].filter((key) => !members.some((m) => keyOf(m.frame) === key)).length;
  byId("selected-count").textContent = `${selected.size} selected` + (elsewhere ? ` (${elsewhere} on other pages)` : "");
  const none = selected.size === 0 || busy;
  byId("label-selected").disabled = none;
  byId("unlabel-selected").disabled = none;
  byId("label-videos").disabled = none;
  byId("select-clear").disabled = selected.size === 0;
}

function choose(index, { range = false } = {}) {
  if (range && anchor !== null) {
    const [from, to] = anchor < index ? [anchor, index] : [index, anchor];
    for (let i = from; i <= to; i++) setSelected(members[i], true);
  } else {
    setSelected(members[index], !selected.has(keyOf(members[index].frame)));
  }
  anchor = index;
  markSelection();
}

let suppressClick = false; // the click that ends a box selection selects nothing more

grid.addEventListener("click", (event) => {
  if (suppressClick) return;
  const item = event.target.closest(".member");
  if (!item) return;
  choose(+item.dataset.index, { range: event.shiftKey });
  focusItem(item);
});

function focusItem(item) {
  for (const other of memberItems()) other.tabIndex = -1;
  item.tabIndex = 0;
  item.focus({ preventScroll: false });
}

// The keyboard: arrows move, space or enter toggles (with shift: the range), ctrl+A all.
grid.addEventListener("keydown", (event) => {
  const item = event.target.closest(".member");
  if (!item) return;
  const items = memberItems();
  const index = +item.dataset.index;
  const columns = getComputedStyle(grid).gridTemplateColumns.split(" ").length;
  const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns, ArrowUp: -columns,
    Home: -index, End: items.length - 1 - index };
  if (event.key in moves) {
    const next = items[Math.max(0, Math.min(items.length - 1, index + moves[event.key]))];
    focusItem(next);
    if (event.shiftKey) choose(+next.dataset.index, { range: true });
    event.preventDefault();
  } else if (event.key === " " || event.key === "Enter") {
    choose(index, { range: event.shiftKey });
    event.preventDefault();
  } else if (event.key === "a" && (event.ctrlKey || event.metaKey)) {
    selectPage();
    event.preventDefault();
  }
});

function selectPage() {
  for (const member of members) setSelected(member, true);
  markSelection();
}

// Box selection: press anywhere on the grid (on a thumbnail too) and drag.
let drag = null;

grid.addEventListener("pointerdown", (event) => {
  if (event.button !== 0 || event.pointerType === "touch") return; // touch scrolls
  drag = { x: event.pageX, y: event.pageY, additive: event.shiftKey, base: new Map(selected), box: null };
});

document.addEventListener("pointermove", (event) => {
  if (!drag) return;
  if (!drag.box) {
    if (Math.hypot(event.pageX - drag.x, event.pageY - drag.y) < 6) return; // still a click
    drag.box = element("div", { className: "select-box" });
    grid.append(drag.box);
  }
  event.preventDefault();
  const area = { left: Math.min(drag.x, event.pageX), right: Math.max(drag.x, event.pageX),
    top: Math.min(drag.y, event.pageY), bottom: Math.max(drag.y, event.pageY) };
  const origin = grid.getBoundingClientRect();
  Object.assign(drag.box.style, {
    left: `${area.left - origin.left - scrollX}px`, top: `${area.top - origin.top - scrollY}px`,
    width: `${area.right - area.left}px`, height: `${area.bottom - area.top}px` });
  selected.clear();
  if (drag.additive) for (const [key, value] of drag.base) selected.set(key, value);
  for (const item of memberItems()) {
    const r = item.getBoundingClientRect();
    const touches = r.left + scrollX <= area.right && r.right + scrollX >= area.left &&
      r.top + scrollY <= area.bottom && r.bottom + scrollY >= area.top;
    if (touches) setSelected(members[+item.dataset.index], true);
  }
  markSelection();
});

document.addEventListener("pointerup", () => {
  if (drag && drag.box) {
    drag.box.remove();
    suppressClick = true;
    setTimeout(() => { suppressClick = false; }, 0); // past the click this release makes
  }
  drag = null;
});

byId("select-page").addEventListener("click", selectPage);
byId("select-clear").addEventListener("click", () => {
  selected.clear();
  anchor = null;
  markSelection();
});

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

function actionElement(action) {
  const when = new Date(action.created_at).toLocaleString();
  const item = element("li", { className: action.undone_at ? "undone" : "" },
    element("span", { className: "what", textContent: action.description }),
    element("span", { className: "who", textContent: ` · ${action.who || "someone"} · ${when}` }));
  if (action.undone_at) item.append(element("span", { className: "badge", textContent: "undone" }));
  return item;
}

// Runs a change with the buttons held and any error said in the message area.
async function act(work) {
  if (busy) return;
  busy = true;
  showError("");
  const buttons = [...document.querySelectorAll("#cluster-tools button, #label-form button")];
  const before = buttons.map((b) => b.disabled);
  buttons.forEach((b) => { b.disabled = true; });
  try {
    await work();
  } catch (error) {
    showError(errorText(error));
  } finally {
    busy = false;
    buttons.forEach((b, i) => { b.disabled = before[i]; });
    markSelection();
  }
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
    const action = await postJSON(labelsApi, { label: name, frames: [...selected.values()] });
    selected.clear();
    await afterLabelling(action);
  });
});

byId("unlabel-selected").addEventListener("click", () => act(async () => {
  const action = await postJSON(labelsApi, { label: null, frames: [...selected.values()] });
  selected.clear();
  await afterLabelling(action);
}));

// Every frame of the selected frames' videos, one action per video (each undone on its own).
byId("label-videos").addEventListener("click", () => act(async () => {
  const name = labelName();
  const sources = [...new Set([...selected.values()].map(([source]) => source))];
  let changed = 0;
  for (const source of sources) changed += (await postJSON(labelsApi, { label: name, source })).frames;
  selected.clear();
  showNote(`Done: labelled every frame of ${sources.length} video(s) as '${name}' (${changed} frame(s) changed).`);
  await Promise.all([loadPage(), loadLabels()]);
}));

byId("name-cluster").addEventListener("click", () => act(async () => {
  const name = labelName();
  await stillCurrent();
  await afterLabelling(await postJSON(labelsApi, { label: name, cluster: clusterId, clustering: clusteringId ?? undefined }));
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
  if (!editor) for (const node of document.querySelectorAll(".editor-only")) node.hidden = true;
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
