// The map's search box (loaded before map.js, whose globals it uses when called): files
// found by name or folder as one types (the sources API's `search`), chosen with the
// pointer or the arrow keys and Enter; the map then flies to the file's first frame and
// opens it in the panel. A combobox with a listbox, as screen readers expect.
"use strict";

const FIND_LIMIT = 8;
const findInput = document.getElementById("find-source");
const findResults = document.getElementById("find-results");
const findStatus = document.getElementById("find-status"); // what the list cannot say: none found, failed
let findRequest = 0;
let findTimer = null;

function closeFindResults() {
  findResults.hidden = true;
  findStatus.hidden = true;
  findInput.setAttribute("aria-expanded", "false");
  findInput.removeAttribute("aria-activedescendant");
}

function findOptions() {
  return [...findResults.querySelectorAll("[role=option]")];
}

function activateOption(index) {
  const options = findOptions();
  options.forEach((option, i) => option.setAttribute("aria-selected", i === index ? "true" : "false"));
  if (options[index]) findInput.setAttribute("aria-activedescendant", options[index].id);
}

function findMessage(text, className = "message") {
  findResults.replaceChildren();
  findResults.hidden = true;
  findInput.setAttribute("aria-expanded", "false");
  findStatus.className = className;
  findStatus.textContent = text;
  findStatus.hidden = false;
}

async function findSources(text) {
  const request = ++findRequest;
  let found;
  try {
    found = await getJSON(`/api/sources/?collection=${collectionId}&search=${encodeURIComponent(text)}` +
      `&limit=${FIND_LIMIT}`);
  } catch (error) {
    if (request === findRequest) findMessage(`Search failed: ${errorText(error)}`, "error");
    return;
  }
  if (request !== findRequest) return; // a later keystroke asked again
  if (!found.results.length) {
    findMessage(`No file or folder holds “${text}”.`);
    return;
  }
  findResults.replaceChildren(...found.results.map((source, i) => {
    const option = element("li", { id: `find-${source.id}`, role: "option", className: "found" },
      element("span", { className: "name", textContent: source.name }),
      element("span", { className: "folder", textContent: source.folder }),
      source.status === "ready" ? "" : element("span", { className: "status", textContent: source.status }));
    option.setAttribute("aria-selected", i === 0 ? "true" : "false");
    option.addEventListener("mousedown", (event) => event.preventDefault()); // keep the focus in the box
    option.addEventListener("click", () => jumpToSource(source));
    option.source = source;
    return option;
  }));
  findResults.dataset.text = text;
  findStatus.hidden = found.count <= found.results.length;
  findStatus.className = "message";
  findStatus.textContent = `and ${found.count - found.results.length} more: type more`;
  findResults.hidden = false;
  findInput.setAttribute("aria-expanded", "true");
  activateOption(0);
}

// The file's first frame on the map, opened in the panel; or why it is not on the map.
async function jumpToSource(source) {
  let path;
  try {
    path = await getJSON(`${api}path/?source=${source.id}`);
  } catch (error) {
    findMessage(`${source.name} is not on the map` +
      (source.error ? `: ${source.error}` : ` (${source.status}): ${errorText(error)}`), "error");
    return;
  }
  closeFindResults();
  findInput.value = "";
  const [x, y] = path.points[0];
  // One step for the jump, so Back returns to the view before it: the move writes nothing,
  // the frame opened pushes the new view with it.
  moveQuietly(() => map.setView(toLatLng(x, y), Math.max(map.getZoom(), state.max_zoom - 2), { animate: false }));
  await select(`source=${source.id}&frame=${path.frames[0]}`);
}

if (findInput) {
  findInput.addEventListener("input", () => {
    clearTimeout(findTimer);
    const text = findInput.value.trim();
    if (!text) {
      findRequest++;
      closeFindResults();
      return;
    }
    findTimer = setTimeout(() => findSources(text), 200);
  });
  findInput.addEventListener("keydown", (event) => {
    const options = findOptions();
    const active = options.findIndex((option) => option.getAttribute("aria-selected") === "true");
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      if (options.length) activateOption((active + (event.key === "ArrowDown" ? 1 : -1) + options.length) % options.length);
    } else if (event.key === "Enter" && !findResults.hidden && findResults.dataset.text === findInput.value.trim()
               && options[Math.max(active, 0)]) { // not a list of what was typed before
      event.preventDefault();
      jumpToSource(options[Math.max(active, 0)].source);
    } else if (event.key === "Escape") {
      event.stopPropagation(); // closes the list, not the panel
      closeFindResults();
    }
  });
  findInput.addEventListener("blur", () => setTimeout(closeFindResults, 150));
}
