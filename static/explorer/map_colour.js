// The colour tools on the map page. Loaded before map.js, which calls them:
// - previewFrame(frame, hovered): once the pointer has rested on a frame for half a second,
//   its clip plays as a small GIF in the hover's tooltip. The server makes each clip's GIF
//   once (a worker task) and keeps it with the map version; until it is made it answers 202
//   and this asks again, so the tiles never wait for it. A GIF rather than a video loop: it
//   plays in an <img> on every browser with no codec, no autoplay policy and no player, and
//   it comes from the same quantizer as the shared GIFs (steady colours).
// - gifTools(frame): the "GIF" button of the panel: a clip of the frame's video made into a
//   GIF with the chosen colours (a job), shown when ready with its flicker and a download link.
"use strict";

const PREVIEW_REST_MS = 500;
const PREVIEW_TRIES = 20; // a second apart: a worker busy with an ingest may take a while

let previewRequest = 0;
let previewURL = null; // the object URL shown, revoked when the hover moves on

function clearPreview() {
  previewRequest++;
  if (previewURL) URL.revokeObjectURL(previewURL);
  previewURL = null;
}

// `hovered` is the hover's Leaflet rectangle with its tooltip; `stillHovered()` says whether
// the pointer is still there.
async function previewFrame(frame, hovered, stillHovered) {
  clearPreview();
  if (frame.kind === "photo") return;
  const request = previewRequest;
  await new Promise((resolve) => setTimeout(resolve, PREVIEW_REST_MS));
  const url = `/collections/${collectionId}/previews/${state.version}/${frame.row}.gif`;
  for (let tries = 0; tries < PREVIEW_TRIES; tries++) {
    if (request !== previewRequest || !stillHovered()) return;
    const response = await fetch(url).catch(() => null);
    if (!response || response.status === 404 || (!response.ok && response.status !== 202)) return;
    if (response.status === 202) {
      await new Promise((resolve) => setTimeout(resolve, 1000 * (+response.headers.get("Retry-After") || 1)));
      continue;
    }
    const blob = await response.blob();
    if (request !== previewRequest || !stillHovered()) return;
    previewURL = URL.createObjectURL(blob);
    hovered.setTooltipContent(element("div", { className: "preview" },
      element("img", { src: previewURL, alt: `${frame.name}: its clip playing` }),
      element("div", { textContent: `${frame.name} · ${clock(frame.time)}` })));
    return;
  }
}

// --- the panel's GIF button ---

const GIF_COLOURS = [4, 8, 16, 32, 64, 128, 256];

function labelled(text, control) {
  return element("label", {}, `${text} `, control);
}

function choice(name, values, selected) {
  const select = element("select", { name });
  for (const value of values) select.append(element("option", { value, textContent: value, selected: value === selected }));
  return select;
}

function gifTools(frame) {
  // Making a GIF is a job: editors only (explorer/access.py); viewers download what there is.
  const box = element("details", { className: "gif-tools", hidden: document.body.dataset.role === "viewer" });
  const half = state.clip_seconds / 2;
  const start = element("input", { name: "start", type: "number", min: 0, step: 0.1,
    value: Math.max(0, frame.time - half).toFixed(1) });
  const stop = element("input", { name: "stop", type: "number", min: 0, step: 0.1, value: (frame.time + half).toFixed(1) });
  const colours = choice("colours", GIF_COLOURS.map(String), "16");
  const seeding = choice("seeding", ["sequential", "independent", "global"], "sequential");
  const distance = choice("distance", ["euclidean", "manhattan"], "euclidean");
  const make = element("button", { type: "submit", textContent: "Make GIF" });
  const message = element("p", { className: "error", hidden: true });
  const progress = element("div");
  const result = element("div", { className: "gif-result" });
  const form = element("form", {},
    frame.kind === "photo" ? "" : element("div", {}, labelled("from", start), labelled("to", stop), " s"),
    element("div", {}, labelled("colours", colours), labelled("seeding", seeding), labelled("distance", distance)),
    make, message, progress, result);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    let gif = null;
    runJob(make, progress, message, async () => {
      gif = await postJSON("/api/gifs/", { collection: +collectionId, source: frame.source, start: +start.value,
        stop: +stop.value, colours: +colours.value, seeding: seeding.value, distance: distance.value });
      return gif.job;
    }, async () => {
      if (gif) showGif(await getJSON(`/api/gifs/${gif.id}/`), result);
    });
  });
  box.append(element("summary", { textContent: "GIF" }), form);
  return box;
}

function showGif(gif, box) {
  if (!gif.download) return;
  box.replaceChildren(
    element("img", { src: `${gif.download}?inline=1`, alt: `GIF ${gif.id}`, className: "frame-image" }),
    element("div", { className: "when", textContent: `${gif.width}x${gif.height}, ${gif.frames} frames, ` +
      `${Math.round(gif.file_size / 1024)} KiB · flicker ${gif.flicker.toFixed(2)} ` +
      `(the video's own ${gif.source_flicker.toFixed(2)})` }),
    element("a", { href: gif.download, textContent: "Download the GIF" }));
}
