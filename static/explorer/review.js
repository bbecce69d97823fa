// The frames to review: those the tagger is least sure of (unlabelled, their most probable
// label below the threshold) and those it tags otherwise than people did, least sure first,
// each with its predicted label and probability and the label it was given. Frames are
// selected as in a cluster's gallery (common.js: GallerySelection); editors confirm the
// predictions of the selection (each frame is labelled with the label predicted for it) or
// give it another label, and undo. The address holds the filter and the page:
// ?label=NAME&below=0.5&page=2.
"use strict";

const head = document.getElementById("review-head");
const collectionId = head.dataset.collection;
const predictionsApi = `/api/collections/${collectionId}/predictions/`;
const labelsApi = `/api/collections/${collectionId}/labels/`;
const PAGE_SIZE = 60;
const byId = (id) => document.getElementById(id);
const grid = byId("grid");

const params = new URLSearchParams(location.search);
let page = Math.max(1, parseInt(params.get("page"), 10) || 1);
let pages = 1;
let label = params.get("label") || "";
let below = params.get("below") || ""; // empty: the server's default (TAGGER_REVIEW_BELOW)
let items = []; // this page's frames to review, as the API gives them
const predictedOf = new Map(); // "source:frame" -> its predicted label, for the selection across pages
let colours = {}; // label name -> its colour on the map
const act = actions("#label-form button", showError, () => selection.mark());
const selection = new GallerySelection(grid, { pageFrames: () => items.map((item) => item.frame),
  count: byId("selected-count"), changed: enableButtons });

function showError(text) {
  byId("message").textContent = text;
  byId("message").hidden = !text;
}

function showNote(text) {
  byId("note").textContent = text;
  byId("note").hidden = !text;
}

function query(pageNumber) {
  const q = new URLSearchParams({ review: "true", page: pageNumber, page_size: PAGE_SIZE });
  if (label) q.set("label", label);
  if (below !== "") q.set("below", below);
  return q;
}

function pageAddress() {
  const q = new URLSearchParams();
  if (label) q.set("label", label);
  if (below !== "") q.set("below", below);
  if (page > 1) q.set("page", page);
  return location.pathname + (q.toString() ? `?${q}` : "");
}

async function loadPage() {
  let data;
  try {
    data = await getJSON(`${predictionsApi}?${query(page)}`);
  } catch (error) {
    if (error.status === 404 && page > 1) { // fewer pages now: reviewed frames left the list
      page = 1;
      return loadPage();
    }
    showUnavailable(error);
    return;
  }
  showError("");
  pages = data.pages;
  items = data.predictions;
  for (const item of items) predictedOf.set(frameKey(item.frame), item.predicted);
  colours = Object.fromEntries(data.tagger.labels.map((l) => [l.name, l.colour]));
  selection.newPage();
  history.replaceState(null, "", pageAddress());
  showFacts(data);
  grid.replaceChildren(...items.map(itemElement));
  if (!items.length) {
    grid.append(element("p", { className: "message", textContent: "Nothing needs review here." }));
  }
  selection.mark();
}

function showUnavailable(error) {
  byId("review-facts").replaceChildren(errorText(error), " ",
    element("a", { href: `/collections/${collectionId}/#tagger-section`, textContent: "the collection's tagger" }));
  grid.replaceChildren();
  items = [];
  for (const control of document.querySelectorAll("main button, main input, main select")) control.disabled = true;
}

function showFacts(data) {
  const select = byId("review-label");
  if (select.options.length === 1) { // the tagger's labels, once
    select.append(...data.tagger.classes.map((name) => element("option", { value: name, textContent: name })));
    select.value = label;
  }
  if (byId("review-below").value === "") byId("review-below").value = data.below;
  byId("review-facts").textContent = `Tagger ${data.tagger.version}: ${data.count} frame(s) to review` +
    (label ? ` predicted or labelled as '${label}'` : "") + ` · unlabelled frames whose most probable label ` +
    `is below ${data.below}, and labelled frames it tags otherwise · least sure first`;
  const hash = new URLSearchParams({ tags: "1" });
  if (label) hash.set("tag", label);
  byId("map-link").href = `/collections/${collectionId}/map/#${hash}`;
  showPager(page, pages, `page ${page} of ${pages} · ${data.count} frame(s)`);
}

function chip(text, colour, title) {
  const node = element("span", { className: "chip tag", title }, element("span", { className: "swatch" }), text);
  if (colour) node.style.setProperty("--tag-colour", colour);
  return node;
}

function itemElement(item, index) {
  const percent = (p) => `${Math.round(p * 100)}%`;
  const chips = element("div", { className: "chips" }, chip(`${item.predicted} ${percent(item.probability)}`,
    colours[item.predicted], "predicted: " + item.top.map((t) => `${t.name} ${percent(t.probability)}`).join(", ")));
  if (item.label !== null) {
    const given = element("span", { className: "chip given", textContent: `label: ${item.label}`,
      title: `labelled '${item.label}'; the tagger gives it ${percent(item.confidence)}` });
    given.classList.toggle("other", item.disagrees);
    chips.append(" ", given);
  }
  const node = galleryItem(item.frame, index, chips);
  node.dataset.predicted = item.predicted;
  node.dataset.confidence = item.confidence;
  node.classList.toggle("disagrees", item.disagrees);
  node.title += ` · predicted ${item.predicted} (${percent(item.probability)})` +
    (item.label !== null ? ` · labelled ${item.label}` : "");
  return node;
}

function enableButtons() {
  const none = selection.selected.size === 0 || act.busy();
  byId("confirm-selected").disabled = none;
  byId("label-selected").disabled = none;
  byId("select-clear").disabled = selection.selected.size === 0;
}

async function loadLabelNames() {
  const data = await getJSON(labelsApi);
  byId("label-names").replaceChildren(...data.labels.map((l) => element("option", { value: l.name })));
}

// Each selected frame takes the label predicted for it: one action per label.
byId("confirm-selected").addEventListener("click", () => act(async () => {
  const byLabel = new Map();
  for (const [key, frame] of selection.selected) {
    const name = predictedOf.get(key);
    if (!byLabel.has(name)) byLabel.set(name, []);
    byLabel.get(name).push(frame);
  }
  const done = [];
  for (const [name, frames] of byLabel) {
    const action = await postJSON(labelsApi, { label: name, frames });
    done.push(`${action.frames} as '${name}'`);
  }
  selection.selected.clear();
  await Promise.all([loadPage(), loadLabelNames()]);
  showNote(`Confirmed: labelled ${done.join(", ")}.`);
}));

byId("label-form").addEventListener("submit", (event) => {
  event.preventDefault();
  act(async () => {
    const name = byId("label-name").value.trim();
    if (!name) {
      byId("label-name").focus();
      throw new Error("Type a label first (or pick one of the collection's).");
    }
    const action = await postJSON(labelsApi, { label: name, frames: selection.frames() });
    selection.selected.clear();
    await Promise.all([loadPage(), loadLabelNames()]);
    showNote(`Done: ${action.description} (${action.frames} frame(s) changed).`);
  });
});

byId("undo").addEventListener("click", () => act(async () => {
  const action = await postJSON(`${labelsApi}undo/`, {});
  await loadPage();
  showNote(`Undone: ${action.description}.`);
}));

byId("review-filter").addEventListener("change", () => {
  label = byId("review-label").value;
  const value = byId("review-below").value;
  below = value !== "" && +value >= 0 && +value <= 1 ? value : "";
  page = 1;
  selection.clear();
  loadPage().catch((error) => showError(errorText(error)));
});
byId("review-filter").addEventListener("submit", (event) => event.preventDefault());
byId("select-page").addEventListener("click", () => selection.selectPage());
byId("select-clear").addEventListener("click", () => selection.clear());
byId("page-prev").addEventListener("click", () => { page = Math.max(1, page - 1); loadPage(); });
byId("page-next").addEventListener("click", () => { page = Math.min(pages, page + 1); loadPage(); });

hideEditorOnly();
if (below !== "") byId("review-below").value = below;
Promise.all([loadPage(), loadLabelNames()]).catch((error) => showError(errorText(error)));
