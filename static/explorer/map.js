// The map page: Leaflet with a flat (non-geographic) coordinate system over the server's
// tiles. Hover names the frame under the pointer; a click opens the panel (map_panel.js) with
// the frame, its video playing from the start of its clip, its video's path (map_paths.js),
// and the most similar clips.
// The URL's hash holds the view and the selected frame: #z=3&x=0.1&y=-0.2&frame=12:340,
// clusters=1 while the clusters are drawn (each a tinted outline with a chip at its
// centre that opens its gallery), and tags=1&tag=NAME while the predicted labels are
// (map_tags.js).
"use strict";

const mapElement = document.getElementById("map");
const collectionId = mapElement.dataset.collection;
const api = `/api/collections/${collectionId}/map/`;
const panel = document.getElementById("panel");
const COLOURS = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
  "#bcf60c", "#fabebe", "#008080"];

let state = null; // the map's state from the API
let map = null;
let tiles = null;
let overlays = null; // paths and markers of the current selection
let hover = { key: null, box: null, request: 0 };
let clusterLayer = null; // the clusters' outlines and chips, while shown
let clustersShown = false;
let clusters = null; // the API's answer, or null when there are none (yet)
let hadJobs = false; // jobs were running at the last poll: clusters may change when they end

// Map coordinates ([-1, 1]^2, y up) <-> Leaflet's flat coordinates (zoom 0 pixels, y down).
function toLatLng(x, y) {
  const [width, height] = state.tile_size;
  return L.latLng(-(1 - y) / 2 * height, (x + 1) / 2 * width);
}

function fromLatLng(latlng) {
  const [width, height] = state.tile_size;
  return { x: latlng.lng / width * 2 - 1, y: 1 + latlng.lat / height * 2 };
}

// --- the URL's hash ---

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const view = { z: parseInt(params.get("z"), 10), x: parseFloat(params.get("x")), y: parseFloat(params.get("y")) };
  const frame = (params.get("frame") || "").match(/^(\d+):(\d+)$/);
  return { view: Number.isFinite(view.z + view.x + view.y) ? view : null,
    frame: frame ? { source: +frame[1], frame: +frame[2] } : null, clusters: params.get("clusters") === "1",
    tags: params.get("tags") === "1", tag: params.get("tag") || "", copies: params.get("copies") === "hidden" };
}

function hashOfState() {
  const centre = fromLatLng(map.getCenter());
  const frame = panel.dataset.frame ? `&frame=${panel.dataset.frame}` : ""; // "source:frame", kept readable
  const shown = clustersShown ? "&clusters=1" : "";
  return `#z=${map.getZoom()}&x=${centre.x.toFixed(4)}&y=${centre.y.toFixed(4)}${frame}${shown}${tagsHash()}` +
    copiesHash();
}

// The address is the state. A move, a frame opened or the panel closed is a step that Back
// undoes ("push"); what only restates the step (toggles, the panel resizing the map) replaces
// it. While the map follows an address, its moves write nothing: the address is right.
let followingAddress = false;
let stepless = false;

function withoutStep(change) {
  const before = stepless;
  stepless = true;
  try {
    change();
  } finally {
    stepless = before;
  }
}

function writeHash(how = "replace") {
  const hash = hashOfState();
  if (hash === location.hash) return;
  if (how === "push" && !stepless && !followingAddress) history.pushState(null, "", hash);
  else history.replaceState(null, "", hash);
}

function viewMoved() {
  if (!followingAddress) writeHash("push");
}

// A move that writes no address: the step that follows (an address followed, or a frame
// opened by the search) writes it, view and frame together.
function moveQuietly(change) {
  const before = followingAddress;
  followingAddress = true;
  try {
    change();
  } finally {
    followingAddress = before;
  }
}

// An address edited by hand, or reached with Back or Forward: move the map there and open
// (or close) the frame it names. The frame being opened counts as open (select() marks it
// at once), so a quick Back while it loads closes it instead of waiting for it.
function applyHash() {
  if (!map || location.hash === hashOfState()) return;
  const { view, frame, clusters: showClusters, tags, copies } = readHash();
  moveQuietly(() => {
    if (view) map.setView(toLatLng(view.x, view.y), Math.min(view.z, state.max_zoom), { animate: false });
    const key = frame ? `${frame.source}:${frame.frame}` : undefined;
    if (key !== panel.dataset.frame) {
      if (frame) select(`source=${frame.source}&frame=${frame.frame}`, null, "replace");
      else if (!panel.hidden || panel.dataset.frame) closePanel("replace");
    }
    if (showClusters !== clustersShown) toggleClusters();
    if (tags !== tagsShown) toggleTags();
    if (copies !== copiesHidden) setCopiesHidden(copies);
  });
}

// --- the map ---

function bounds() {
  return L.latLngBounds(toLatLng(-1, -1), toLatLng(1, 1));
}

// Where the frames are: the map opens fitted to them, and the fit button and Home return there.
function contentBounds() {
  const [x0, y0, x1, y1] = state.extent;
  return L.latLngBounds(toLatLng(x0, y0), toLatLng(x1, y1));
}

function fitContent() {
  map.fitBounds(contentBounds(), { padding: [8, 8] });
}

const FitControl = L.Control.extend({
  options: { position: "topleft" },
  onAdd() {
    const button = element("button", { type: "button", className: "fit-control", textContent: "⤢",
      title: "fit the map to its frames (Home)", ariaLabel: "fit the map to its frames (Home)" });
    L.DomEvent.disableClickPropagation(button);
    button.addEventListener("click", () => { fitContent(); mapElement.focus(); });
    return element("div", { className: "leaflet-bar" }, button);
  },
});

function startMap() {
  map = L.map(mapElement, {
    crs: L.CRS.Simple, minZoom: 0, maxZoom: state.max_zoom, zoomSnap: 1,
    maxBounds: bounds().pad(0.5), attributionControl: false,
  });
  copiesHidden = readHash().copies;
  showCopiesButton();
  tiles = L.tileLayer(currentTileUrl(), {
    tileSize: L.point(...state.tile_size), bounds: bounds(), noWrap: true, maxNativeZoom: state.max_zoom,
    minZoom: 0, maxZoom: state.max_zoom, keepBuffer: 4,
  }).addTo(map);
  overlays = L.layerGroup().addTo(map);
  clusterLayer = L.layerGroup().addTo(map);
  const { view, frame, clusters: showClusters, tags, tag } = readHash();
  clustersShown = showClusters;
  tagsShown = tags;
  tagFilter = tag;
  new FitControl().addTo(map);
  if (view) map.setView(toLatLng(view.x, view.y), Math.min(view.z, state.max_zoom));
  else fitContent();
  if (frame) panel.dataset.frame = `${frame.source}:${frame.frame}`; // kept in the address while it loads
  writeHash();
  map.on("moveend", viewMoved);
  map.on("mousemove", (event) => hoverAt(event.latlng));
  map.on("mouseout", clearHover);
  map.on("zoomstart", clearHover); // the outline and the name were of the zoom before
  map.on("click", (event) => selectAt(event.latlng));
  map.on("zoomend", placeChips);
  document.getElementById("show-dissimilar").disabled = false;
  document.getElementById("export-poster").disabled = false;
  mapElement.focus();
  if (frame) select(`source=${frame.source}&frame=${frame.frame}`, null, "replace");
  loadClusters();
  loadTags();
  startTour(); // map_tour.js: a first visit only
}

// --- clusters: a tinted outline each, and a chip at its centre that opens its gallery ---

const CLUSTER_COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
  "#9c755f", "#bab0ac", "#17becf", "#bcbd22", "#8c6bb1", "#e377c2"];

function clusterColour(id) {
  return CLUSTER_COLOURS[id % CLUSTER_COLOURS.length];
}

// The clusters from the API; the button says when there are none, or when they are of an
// earlier map than the one shown (while the new map's are being made).
async function loadClusters() {
  const button = document.getElementById("show-clusters");
  try {
    clusters = await getJSON(`/api/collections/${collectionId}/clusters/`);
  } catch (error) {
    clusters = null;
    button.disabled = true;
    button.textContent = error.status === 409 ? "Clusters: none yet" : "Clusters";
    button.title = errorText(error);
    drawClusters();
    return;
  }
  const stale = clusters.clustering.map_version !== state.version;
  button.disabled = stale;
  button.textContent = "Clusters";
  button.title = stale ? "These clusters were made from an earlier map: the new map's are being made (or cluster " +
    "again on the collection's page)." : `${clusters.clusters.length} cluster(s): show or hide them on the map`;
  if (stale) clusters = null;
  drawClusters();
}

function drawClusters() {
  const button = document.getElementById("show-clusters");
  button.setAttribute("aria-pressed", clustersShown && clusters ? "true" : "false");
  clusterLayer.clearLayers();
  if (!clustersShown || !clusters) return;
  L.layerGroup().addTo(clusterLayer); // the chips' leader lines (placeChips)
  for (const cluster of clusters.clusters) {
    const colour = clusterColour(cluster.id);
    L.polygon(cluster.outline.map(([x, y]) => toLatLng(x, y)), {
      color: colour, weight: cluster.small ? 1.5 : 2, opacity: cluster.small ? 0.6 : 0.9,
      fillColor: colour, fillOpacity: cluster.small ? 0.08 : 0.18, dashArray: cluster.small ? "5 5" : null,
      interactive: false,
    }).addTo(clusterLayer);
  }
  for (const cluster of clusters.clusters) {
    const marker = L.marker(toLatLng(...cluster.centre), { icon: L.divIcon({ html: clusterChip(cluster),
      className: "cluster-marker", iconSize: [0, 0] }), keyboard: false, riseOnHover: true, bubblingMouseEvents: false,
    }).addTo(clusterLayer);
    marker.options.colour = clusterColour(cluster.id);
  }
  placeChips();
}

// A chip: a link to the cluster's gallery with its label (or its number) and its size.
function clusterChip(cluster) {
  const named = cluster.label !== null;
  const chip = element("a", { className: "cluster-chip" + (cluster.small ? " small" : "") + (named ? "" : " unnamed"),
    href: `/collections/${collectionId}/clusters/${cluster.id}/`,
    title: `cluster #${cluster.id}${named ? `: ${cluster.label}` : " (unnamed)"} · ${cluster.size} frame(s) · ` +
      `cohesion ${cluster.cohesion.toFixed(2)}${cluster.small ? " · a small cluster" : ""}` +
      (named ? ` · ${cluster.label_frames} of its frames carry the label` : "") + ": open its gallery" },
  element("span", { className: "swatch" }),
  element("span", { className: "name", textContent: named ? cluster.label : `#${cluster.id}` }),
  element("span", { className: "size", textContent: String(cluster.size) }));
  chip.style.setProperty("--cluster-colour", clusterColour(cluster.id));
  chip.dataset.cluster = cluster.id;
  return chip;
}

// Chips that would overlap are moved up or down, the larger clusters' (drawn first) staying
// at their centres.
function placeChips() {
  if (!clusterLayer) return;
  const leaders = clusterLayer.getLayers().find((layer) => layer instanceof L.LayerGroup);
  if (!leaders) return; // not shown
  leaders.clearLayers();
  const placed = [];
  for (const marker of clusterLayer.getLayers()) {
    if (!(marker instanceof L.Marker)) continue;
    const chip = marker.getElement() && marker.getElement().firstChild;
    if (!chip) continue;
    const at = map.latLngToLayerPoint(marker.getLatLng());
    const width = chip.offsetWidth + 4;
    const height = chip.offsetHeight + 3;
    let shift = 0;
    for (let i = 0; i < 15; i++) {
      const step = Math.ceil(i / 2) * (i % 2 ? 1 : -1) * height; // 0, +1, -1, +2, -2... chip heights
      const box = { left: at.x - width / 2, right: at.x + width / 2, top: at.y + step - height / 2 };
      box.bottom = box.top + height;
      const free = !placed.some((p) => p.left < box.right && box.left < p.right && p.top < box.bottom && box.top < p.bottom);
      if (free || i === 14) {
        shift = step;
        placed.push(box);
        break;
      }
    }
    chip.style.setProperty("--shift", `${shift}px`);
    if (shift) { // a thin line from the chip back to the cluster's centre, under every chip
      const options = { color: marker.options.colour, weight: 1.5, opacity: 0.9, interactive: false };
      L.polyline([marker.getLatLng(), map.layerPointToLatLng(at.add([0, shift]))], options).addTo(leaders);
      L.circleMarker(marker.getLatLng(), { ...options, radius: 3, fillOpacity: 1 }).addTo(leaders);
    }
  }
}

function toggleClusters() {
  clustersShown = !clustersShown;
  writeHash();
  if (clustersShown) loadClusters(); // labels given since on the gallery pages show
  else drawClusters();
}

// The grid cell under a point at the current zoom, as the server's tiles draw it.
function cellAt(latlng) {
  const level = Math.min(map.getZoom(), state.max_zoom - 2);
  const n = 4 << level;
  const { x, y } = fromLatLng(latlng);
  if (Math.abs(x) > 1 || Math.abs(y) > 1) return null;
  const column = Math.min(n - 1, Math.floor((x + 1) / 2 * n));
  const row = Math.min(n - 1, Math.floor((1 - y) / 2 * n));
  const corner = (c, r) => toLatLng(c / n * 2 - 1, 1 - r / n * 2);
  return { key: `${level}/${column}/${row}`, box: L.latLngBounds(corner(column, row), corner(column + 1, row + 1)) };
}

function pointQuery(latlng) {
  const { x, y } = fromLatLng(latlng);
  return `x=${x.toFixed(6)}&y=${y.toFixed(6)}&zoom=${map.getZoom()}${copiesQuery()}`;
}

async function hoverAt(latlng) {
  const cell = cellAt(latlng);
  if (!cell) return;
  const key = `${map.getZoom()}/${cell.key}`; // the deepest zooms share a grid level, not thumbnails
  if (key === hover.key || (hover.box && hover.box.getBounds().contains(latlng))) return; // the same thumbnail
  clearHover();
  hover.key = key;
  const request = ++hover.request;
  await new Promise((resolve) => setTimeout(resolve, 60)); // wait until the pointer rests a moment
  if (request !== hover.request) return;
  const response = await fetch(`${api}point/?${pointQuery(latlng)}`);
  if (request !== hover.request || !response.ok) return;
  const frame = await response.json();
  const [x0, y0, x1, y1] = frame.box || [];
  const drawn = frame.box ? L.latLngBounds(toLatLng(x0, y0), toLatLng(x1, y1)) : cell.box; // a frame grown past its cell
  hover.box = L.rectangle(drawn, { weight: 1, color: "#fff", fill: false, interactive: false })
    .bindTooltip(textElement(`${frame.name} · ${clock(frame.time)}`), { className: "frame-tooltip", direction: "top" })
    .addTo(map).openTooltip();
  mapElement.title = `${frame.name} at ${clock(frame.time)}`;
  previewFrame(frame, hover.box, () => request === hover.request); // map_colour.js
}

function clearHover() {
  clearPreview();
  hover.request++;
  hover.key = null;
  if (hover.box) hover.box.remove();
  hover.box = null;
}

async function selectAt(latlng) {
  const { x, y } = fromLatLng(latlng);
  if (Math.abs(x) > 1 || Math.abs(y) > 1) return; // off the map: no frame there (the API would say 400)
  const response = await fetch(`${api}point/?${pointQuery(latlng)}`);
  if (response.ok) select(null, await response.json());
}

// --- waiting for a map, and noticing a new one ---

// No map yet: the jobs under way (their stage, progress and message) fill the map's place,
// said once: not in the toolbar too, nor again in the reason (the API's status repeats them).
function showWaiting(current) {
  const waiting = document.getElementById("waiting");
  waiting.hidden = false;
  waiting.querySelector(".reason").textContent = current.jobs.length
    ? "No map yet: it is being made." : current.status;
  waiting.querySelector(".jobs").replaceChildren(...current.jobs.map((job) => jobElement(job, { files: true })));
}

async function poll() {
  let delay = 5000;
  try {
    const current = await getJSON(api);
    const badge = current.random_weights ? [randomWeightsBadge()] : [];
    document.getElementById("map-status").replaceChildren(...(current.ready
      ? [current.status, " ", ...badge, ...current.jobs.map((job) => jobElement(job))] : badge));
    if (!current.ready) {
      showWaiting(current);
      delay = 1000;
    } else if (!state) {
      document.getElementById("waiting").hidden = true;
      state = current;
      startMap();
    } else if (current.version !== state.version) {
      state = current; // a new layout: same view, new tiles
      map.setMaxZoom(state.max_zoom);
      tiles.options.maxZoom = tiles.options.maxNativeZoom = state.max_zoom;
      tiles.setUrl(currentTileUrl());
      showCopiesButton();
      loadClusters();
      loadTags();
    } else if (hadJobs && !current.jobs.length) {
      loadClusters(); // a job ended: it may have grouped the map again, or trained a tagger
      loadTags();
      state.copies = current.copies; // or looked for copies again
      tiles.setUrl(currentTileUrl());
      showCopiesButton();
    }
    hadJobs = current.jobs.length > 0;
    if (current.jobs.length) delay = 1000;
  } catch (error) {
    document.getElementById("map-status").textContent = `cannot reach the server (${error.message})`;
  }
  setTimeout(poll, delay);
}

panel.querySelector(".close").addEventListener("click", () => closePanel());
window.addEventListener("popstate", applyHash); // Back and Forward
window.addEventListener("hashchange", applyHash); // the address edited by hand
// + and - zoom one level a press. Leaflet's own keys zoom three with Shift held, and "+" is
// Shift and "=" on many keyboards: this listener, on the way down to the map, takes them first.
const ZOOM_KEYS = { "+": 1, "=": 1, "-": -1, "_": -1 };
document.addEventListener("keydown", (event) => {
  if (!map || !(event.key in ZOOM_KEYS) || !mapElement.contains(event.target) || event.ctrlKey || event.metaKey) return;
  event.stopPropagation();
  event.preventDefault();
  map.setZoom(map.getZoom() + ZOOM_KEYS[event.key]);
}, true);

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !panel.hidden) closePanel();
  // Enter opens the frame at the map's centre: the keyboard's click.
  if (event.key === "Enter" && map && event.target === mapElement) selectAt(map.getCenter());
  // Home fits the map, unless the key is for a text field or the panel's player.
  if (event.key === "Home" && map && !event.target.closest("input, textarea, select, video, #panel")) {
    event.preventDefault();
    fitContent();
  }
});
document.getElementById("show-dissimilar").addEventListener("click", () => showDissimilar().catch(console.error));
document.getElementById("show-clusters").addEventListener("click", toggleClusters);
// Back from a gallery in another tab: its labels show on the chips.
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && map && clustersShown) loadClusters();
});
poll();
