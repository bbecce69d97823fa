// Paths on the map (loaded before map.js, whose globals it uses when called).
// The clicked video's path is drawn once, clearly: a dark casing under a line whose colour
// runs from PATH_START (its first frame) to PATH_END (its last), with arrows along it, so
// its direction reads without a legend. The similar clips' paths are not drawn all at once
// (ten of them tangle and hide the frames): one shows while the pointer or the keyboard
// focus is on its entry, all of them with the "all paths" toggle (remembered).
"use strict";

const PATH_START = [94, 231, 255]; // cyan
const PATH_END = [255, 79, 216]; // pink
const PATH_STEPS = 24; // colours along a path: enough for a smooth ramp, few enough layers
const MAX_ARROWS = 12;
const ALL_PATHS = "explorer.similar.all-paths";

function rampColour(share) {
  const [r, g, b] = PATH_START.map((start, i) => Math.round(start + (PATH_END[i] - start) * share));
  return `rgb(${r}, ${g}, ${b})`;
}

// A layer with a role (video, video-time, arrow, query, clip), so tests and code can find it.
function withRole(layer, role, source) {
  layer.options.role = role;
  layer.options.source = source;
  return layer;
}

// The screen angle (degrees, clockwise from east) from one map point to the next: the same
// at every zoom, since the flat coordinate system scales x and y alike.
function screenAngle(from, to) {
  const [a, b] = [map.project(from, 0), map.project(to, 0)];
  return Math.atan2(b.y - a.y, b.x - a.x) * 180 / Math.PI;
}

function arrowMarker(from, to, colour, source) {
  const icon = L.divIcon({ className: "path-arrow", iconSize: [14, 14], html:
    `<span style="transform: rotate(${screenAngle(from, to).toFixed(1)}deg); --arrow-colour: ${colour}"></span>` });
  const middle = L.latLng((from.lat + to.lat) / 2, (from.lng + to.lng) / 2);
  return withRole(L.marker(middle, { icon, interactive: false, keyboard: false }), "arrow", source);
}

// The video's path, once its points arrive, unless another frame was chosen meanwhile (`key`).
async function drawPath(source, label, key) {
  let path;
  try {
    path = await getJSON(`${api}path/?source=${source}`);
  } catch (error) {
    console.error(`the path of source ${source}: ${errorText(error)}`);
    return;
  }
  if (panel.dataset.frame !== key) return;
  const points = path.points.map(([x, y]) => toLatLng(x, y));
  withRole(L.polyline(points, { color: "#000", weight: 6, opacity: 0.55 }), "video", source)
    .bindTooltip(textElement(label), { sticky: true }).addTo(overlays);
  if (points.length < 2) return;
  const steps = Math.min(PATH_STEPS, points.length - 1);
  for (let step = 0; step < steps; step++) {
    const first = Math.floor(step * (points.length - 1) / steps);
    const last = Math.floor((step + 1) * (points.length - 1) / steps);
    withRole(L.polyline(points.slice(first, last + 1), { color: rampColour((step + 0.5) / steps), weight: 3,
      opacity: 0.95, interactive: false }), "video-time", source).addTo(overlays);
  }
  // Arrows on the longest segments (a short one would hide its arrow under the frames' cells).
  const segments = points.slice(1).map((to, i) => ({ i, length: map.project(points[i], 0).distanceTo(map.project(to, 0)) }));
  const arrows = segments.sort((a, b) => b.length - a.length).slice(0, Math.min(MAX_ARROWS, Math.ceil(points.length / 4)));
  for (const { i } of arrows) {
    arrowMarker(points[i], points[i + 1], rampColour(i / (points.length - 1)), source).addTo(overlays);
  }
  withRole(L.circleMarker(points[0], { radius: 5, color: "#000", weight: 1.5, fillColor: rampColour(0),
    fillOpacity: 1, interactive: false }), "video-start", source).addTo(overlays);
}

// --- the similar clips' lines ---

let clipLines = new Map(); // clip entry -> its line while drawn

function clipPolyline(clip, colour, role, weight) {
  return withRole(L.polyline(clip.frames.map((f) => toLatLng(f.x, f.y)), { color: colour, weight, opacity: 0.95 })
    .bindTooltip(textElement(`${clip.name} ${clipTime(clip)}`), { sticky: true }), role, clip.source);
}

// The clicked clip's own stretch of its video: always drawn, over the video's path.
function queryLine(clip) {
  clearClipLines();
  const line = clipPolyline(clip, "#ffffff", "query", 5).addTo(overlays);
  clipLines.set("query", line);
}

function showClipLine(item, clip, colour) {
  if (!clipLines.has(item)) clipLines.set(item, clipPolyline(clip, colour, "clip", 4).addTo(overlays));
}

function hideClipLine(item) {
  if (allPathsShown() || !clipLines.has(item)) return;
  overlays.removeLayer(clipLines.get(item));
  clipLines.delete(item);
}

function clearClipLines() {
  for (const line of clipLines.values()) overlays.removeLayer(line);
  clipLines = new Map();
}

function allPathsShown() {
  return localStorage.getItem(ALL_PATHS) === "1";
}

// A listed clip's line follows the pointer and the keyboard focus on its entry.
function followEntry(item, clip, colour) {
  const show = () => showClipLine(item, clip, colour);
  const hide = () => hideClipLine(item);
  item.addEventListener("mouseenter", show);
  item.addEventListener("mouseleave", hide);
  item.addEventListener("focusin", show);
  item.addEventListener("focusout", (event) => { if (!item.contains(event.relatedTarget)) hide(); });
  if (allPathsShown()) show();
}

function allPathsToggle(entries) {
  const box = element("input", { type: "checkbox", id: "all-paths", checked: allPathsShown() });
  box.addEventListener("change", () => {
    localStorage.setItem(ALL_PATHS, box.checked ? "1" : "0");
    for (const [item, clip, colour] of entries) {
      if (box.checked) showClipLine(item, clip, colour);
      else hideClipLine(item);
    }
  });
  return element("label", { className: "toggle" }, box, " draw every clip's path");
}
