// "Export poster" on the map page: a form prefilled from the current view, a preview of
// the grid (the window drawn on the map, and the frame each cell would show), then the
// render job and the collection's posters with their downloads.
"use strict";

const posterFields = [
  ["columns", "columns", "number", 1], ["rows", "rows", "number", 1],
  ["tile_width", "tile width (px)", "number", 8], ["tile_height", "tile height (px)", "number", 8],
  ["rotation", "rotation (°)", "number", null], ["width_mm", "print width (mm, optional)", "number", 1],
  ["dpi", "dpi", "number", 10], ["overlap", "scatter: overlap (0-1)", "number", 0],
];
const posterChoices = [
  ["format", "format", ["png", "tiff", "pdf"]], ["quality", "quality", ["preview", "print"]],
  ["empty", "cells with no frame near", ["blank", "nearest"]],
  // scatter: the frames' cut-outs at their places (their plain backgrounds removed), not a grid
  ["mode", "layout", ["grid", "scatter"]], ["background", "scatter: background", ["white", "transparent"]],
];
let posterWindow = null; // the window outline on the map
let posterTimer = null;

// The poster of the current view: its centre, its width, and the grid the map shows now.
function posterOfView() {
  const view = map.getBounds();
  const [a, b] = [fromLatLng(view.getSouthWest()), fromLatLng(view.getNorthEast())];
  const cellsPerSide = 4 << Math.min(map.getZoom(), state.max_zoom - 2);
  const cell = 2 / cellsPerSide;
  const centre = fromLatLng(map.getCenter());
  const columns = Math.max(1, Math.round((b.x - a.x) / cell));
  return { centre_x: +centre.x.toFixed(5), centre_y: +centre.y.toFixed(5), window_width: columns * cell,
    columns, rows: Math.max(1, Math.round((b.y - a.y) / cell)), tile_width: 534, tile_height: 300, rotation: 0,
    format: "png", quality: "preview", empty: "blank", width_mm: null, dpi: 300, mode: "grid", overlap: 0.1,
    background: "white" };
}

function posterForm(values) {
  const form = element("form", { className: "poster-form" });
  for (const [name, label, type, min] of posterFields) {
    const input = element("input", { name, type, step: "any", value: values[name] ?? "" });
    if (min !== null) input.min = min;
    form.append(element("label", {}, `${label} `, input));
  }
  for (const [name, label, options] of posterChoices) {
    const select = element("select", { name }, ...options.map((o) => element("option", { value: o, textContent: o })));
    select.value = values[name];
    form.append(element("label", {}, `${label} `, select));
  }
  form.dataset.centreX = values.centre_x;
  form.dataset.centreY = values.centre_y;
  form.dataset.windowWidth = values.window_width;
  return form;
}

function posterParams(form) {
  const data = new FormData(form);
  const params = { collection: +collectionId, centre_x: +form.dataset.centreX, centre_y: +form.dataset.centreY,
    window_width: +form.dataset.windowWidth };
  for (const [name] of posterFields) params[name] = data.get(name) === "" ? null : Number(data.get(name));
  for (const [name] of posterChoices) params[name] = data.get(name);
  // The window keeps the view's cell size when the grid changes: wider for more columns.
  params.window_width = +form.dataset.windowWidth / +form.dataset.columns0 * params.columns || params.window_width;
  return params;
}

async function previewPoster(form) {
  const summary = document.querySelector("#poster-summary");
  const grid = document.querySelector("#poster-grid");
  try {
    const plan = await postJSON("/api/posters/plan/", posterParams(form));
    if (posterWindow) posterWindow.remove();
    posterWindow = L.polygon(plan.corners.map(([x, y]) => toLatLng(x, y)),
      { color: "#ffb000", weight: 2, fill: false, interactive: false }).addTo(map);
    // The panel narrows the map: the window the view gave may reach under it. Keep the whole
    // outline in sight beside the panel (the map zooms out if it must).
    if (!map.getBounds().contains(posterWindow.getBounds())) {
      withoutStep(() => map.fitBounds(posterWindow.getBounds(), { padding: [12, 12], animate: false }));
    }
    summary.className = "";
    summary.textContent = `${plan.width} × ${plan.height} px · ${(plan.size_mm[0] / 10).toFixed(1)} × ` +
      `${(plan.size_mm[1] / 10).toFixed(1)} cm · ` + (plan.exact ? `${plan.filled} frame(s), ${plan.blank} blank cell(s)`
        : `${plan.cell_count} cells, up to ${plan.filled} with a frame`);
    grid.replaceChildren();
    if (plan.cells) {
      grid.style.gridTemplateColumns = `repeat(${plan.cells[0].length}, 1fr)`;
      for (const cell of plan.cells.flat()) {
        grid.append(cell ? element("img", { src: cell.image, loading: "lazy", alt: "" }) : element("span"));
      }
    } else {
      grid.append(element("p", { className: "message", textContent: plan.preview }));
    }
    document.getElementById("render-poster").disabled = false;
  } catch (error) {
    summary.className = "error";
    summary.textContent = error.message;
    document.getElementById("render-poster").disabled = true;
  }
}

async function showPosters() {
  const list = document.getElementById("posters");
  if (!list) return;
  const found = await getJSON(`/api/posters/?collection=${collectionId}&limit=20`);
  document.getElementById("poster-list-title").textContent = found.count
    ? `Posters of this collection (${found.count}${found.count > found.results.length ? ", the last 20" : ""})`
    : "Posters of this collection: none yet";
  list.replaceChildren(...found.results.map((poster) => posterElement(poster, async (earlier) => {
    await postJSON(`/api/posters/${earlier.id}/again/`, {});
    showPosters();
  })));
  if (found.results.some((poster) => poster.job && !poster.job.finished_at)) setTimeout(showPosters, 1000);
}

// The collection's posters: a list under its own heading, apart from the form above it.
function posterList() {
  const section = element("section", { id: "poster-list" },
    element("h3", { id: "poster-list-title", textContent: "Posters of this collection" }), element("ul", { id: "posters" }));
  section.setAttribute("aria-labelledby", "poster-list-title");
  return section;
}

function openPosterDialog() {
  const values = posterOfView();
  const form = posterForm(values);
  form.dataset.columns0 = values.columns;
  const render = element("button", { type: "button", id: "render-poster", textContent: "Render poster", disabled: true });
  render.addEventListener("click", async () => {
    render.disabled = true;
    try {
      await postJSON("/api/posters/", posterParams(form));
      await showPosters();
    } catch (error) {
      document.querySelector("#poster-summary").textContent = error.message;
    }
    render.disabled = false;
  });
  delete panel.dataset.frame;
  overlays.clearLayers();
  showPanel(element("h2", { textContent: "Export a poster of this view" }), form,
    element("p", { id: "poster-summary", className: "message", textContent: "planning…" }),
    element("div", { id: "poster-grid" }), render,
    posterList());
  writeHash();
  form.addEventListener("input", () => {
    clearTimeout(posterTimer);
    posterTimer = setTimeout(() => previewPoster(form), 300);
  });
  previewPoster(form);
  showPosters();
}

document.getElementById("export-poster").addEventListener("click", openPosterDialog);
panel.querySelector(".close").addEventListener("click", () => { if (posterWindow) posterWindow.remove(); });
