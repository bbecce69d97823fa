// "Hide copies": the map drawn with the copies the collection's copy search found left out,
// so each group of copies shows one frame, its most original file's (duplicates.js lists
// the groups). The tiles then come from the map's state.copies.tile_url and hovering and
// clicking hit what is drawn. The address keeps it: copies=hidden.
"use strict";

let copiesHidden = false;

function copiesHash() {
  return copiesHidden ? "&copies=hidden" : "";
}

function currentTileUrl() {
  return copiesHidden && state.copies ? state.copies.tile_url : state.tile_url;
}

// For the point endpoint: hit the frames the tiles show.
function copiesQuery() {
  return copiesHidden && state.copies ? "&hide_copies=true" : "";
}

function showCopiesButton() {
  const button = document.getElementById("hide-copies");
  button.disabled = !state.copies;
  button.title = state.copies
    ? `${state.copies.copied_frames} frame(s) copy a frame of a more original file: hide them`
    : "no copies found in this map (or not looked for yet)";
  button.setAttribute("aria-pressed", copiesHidden && state.copies ? "true" : "false");
}

function setCopiesHidden(hidden) {
  copiesHidden = hidden;
  clearHover(); // what was under the pointer may be hidden now
  if (tiles) tiles.setUrl(currentTileUrl());
  if (tagsShown) drawTags(); // the tags overlay follows the tiles' cells
  showCopiesButton();
}

document.getElementById("hide-copies").addEventListener("click", () => {
  setCopiesHidden(!copiesHidden);
  writeHash();
});
