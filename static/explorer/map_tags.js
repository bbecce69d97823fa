// The tagger's predictions on the map page: the "Tags" button lays an overlay over the tiles
// (PNG tiles from the server, explorer/file_views.py tag_tile) that outlines every cell in the
// colour of the label its frame is predicted as, with a legend of the labels; a label picked
// in the legend dims the cells of the others. The hash holds tags=1 and tag=NAME (map.js
// writes it with tagsHash(), and sets tagsShown and tagFilter from it). Loaded before map.js,
// which calls loadTags when the map starts and when it changes.
"use strict";

let tagsShown = false;
let tagFilter = ""; // the label shown alone, or "" for every label
let tagInfo = null; // the predictions' tagger (labels, colours, overlay URL), or null when there are none
let tagLayer = null;
let tagLegend = null;

function tagsHash() {
  if (!tagsShown) return "";
  return "&tags=1" + (tagFilter ? `&tag=${encodeURIComponent(tagFilter)}` : "");
}

// The collection's tagger and its predictions for the map shown; the button says when
// there are none (no tagger yet, or its predictions for a new map are being made).
async function loadTags() {
  const button = document.getElementById("show-tags");
  try {
    const data = await getJSON(`/api/collections/${collectionId}/predictions/?page_size=1`);
    tagInfo = data.map_version === state.version ? data.tagger : null;
    button.disabled = !tagInfo;
    button.textContent = "Tags";
    button.title = tagInfo ? `the labels tagger ${tagInfo.version} predicts: show or hide them on the map`
      : "The tagger has not tagged this map yet.";
  } catch (error) {
    tagInfo = null;
    button.disabled = true;
    button.textContent = error.status === 409 ? "Tags: none yet" : "Tags";
    button.title = errorText(error);
  }
  if (tagInfo && tagFilter && !tagInfo.classes.includes(tagFilter)) tagFilter = "";
  drawTags();
}

function drawTags() {
  document.getElementById("show-tags").setAttribute("aria-pressed", tagsShown && tagInfo ? "true" : "false");
  if (tagLayer) tagLayer.remove();
  if (tagLegend) tagLegend.remove();
  tagLayer = tagLegend = null;
  if (!tagsShown || !tagInfo) return;
  const query = new URLSearchParams();
  if (tagFilter) query.set("only", tagInfo.classes.indexOf(tagFilter));
  if (copiesHidden && state.copies) query.set("copies", state.copies.detection); // as the tiles are drawn
  tagLayer = L.tileLayer(tagInfo.tile_url + (query.size ? `?${query}` : ""), {
    tileSize: L.point(...state.tile_size), bounds: bounds(), noWrap: true, maxNativeZoom: state.max_zoom,
    minZoom: 0, maxZoom: state.max_zoom, keepBuffer: 4, className: "tag-overlay",
  }).addTo(map);
  tagLegend = new TagLegend().addTo(map);
}

// The legend: each label with its colour and frames; a click shows that label alone, again
// every label. Names are people's labels: text only.
const TagLegend = L.Control.extend({
  options: { position: "bottomright" },
  onAdd() {
    const entries = tagInfo.labels.map((label) => {
      const entry = element("button", { type: "button", className: "tag-entry", title: tagFilter === label.name
        ? "show every label" : `show only the frames predicted as '${label.name}'` },
      element("span", { className: "swatch" }), element("span", { className: "name", textContent: label.name }),
      element("span", { className: "size", textContent: String(label.predicted) }));
      entry.style.setProperty("--tag-colour", label.colour);
      entry.dataset.label = label.name;
      entry.classList.toggle("active", tagFilter === label.name);
      entry.setAttribute("aria-pressed", tagFilter === label.name ? "true" : "false");
      entry.addEventListener("click", () => {
        tagFilter = tagFilter === label.name ? "" : label.name;
        writeHash();
        drawTags();
      });
      return element("li", {}, entry);
    });
    const review = `/collections/${collectionId}/review/` +
      (tagFilter ? `?${new URLSearchParams({ label: tagFilter })}` : "");
    const box = element("div", { className: "tag-legend" },
      element("div", { className: "title", textContent: `Predicted by tagger ${tagInfo.version}` }),
      element("ul", {}, ...entries),
      element("a", { className: "review-link", href: review,
        textContent: tagFilter ? `needs review: ${tagFilter}` : "needs review" }));
    L.DomEvent.disableClickPropagation(box);
    L.DomEvent.disableScrollPropagation(box);
    return box;
  },
});

function toggleTags() {
  tagsShown = !tagsShown;
  writeHash();
  if (tagsShown) loadTags(); // a tagger trained since shows
  else drawTags();
}

document.getElementById("show-tags").addEventListener("click", toggleTags);
