// A first visit's tour of the map (loaded before map.js, which starts it once the map
// shows): three short hints, zoom, click and similar clips, in a box in the map's
// bottom-left corner that leaves the frames clickable. "Next" steps through them; "Got it"
// or Esc on the box ends the tour, and it never shows again in this browser.
"use strict";

const TOUR_DONE = "explorer.tour.done";
const TOUR_HINTS = [
  ["Zoom", "Scroll, pinch or press + and − to zoom: the frames grow as you go in. " +
    "Home (or ⤢) fits the map again."],
  ["Click a frame", "Click a thumbnail (or press Enter for the one in the middle) to play its clip and draw " +
    "its video's path, from cyan to pink."],
  ["Similar clips", "The panel then lists the clips most like it: point at one to see its path, " +
    "▶ play to watch it. The address keeps what you see: Back returns."],
];

function endTour(box) {
  localStorage.setItem(TOUR_DONE, "1");
  box.remove();
  mapElement.focus();
}

function startTour() {
  if (localStorage.getItem(TOUR_DONE) === "1" || document.getElementById("tour")) return;
  // A region that speaks its hints, not a dialog: it leaves the map usable and the focus there.
  const box = element("section", { id: "tour", role: "region", ariaLabel: "a tour of the map" });
  box.setAttribute("aria-live", "polite");
  let step = 0;
  const show = () => {
    const [title, text] = TOUR_HINTS[step];
    const last = step === TOUR_HINTS.length - 1;
    const next = element("button", { type: "button", className: "next", textContent: last ? "Got it" : "Next" });
    next.addEventListener("click", () => {
      if (last) endTour(box);
      else {
        step++;
        show();
        box.querySelector("button.next").focus(); // the keyboard stays on the tour's next step
      }
    });
    const skip = element("button", { type: "button", className: "skip", textContent: "Skip the tour" });
    skip.addEventListener("click", () => endTour(box));
    box.replaceChildren(element("h2", { textContent: `${title} (${step + 1} of ${TOUR_HINTS.length})` }),
      element("p", { textContent: text }), next, last ? "" : skip);
  };
  box.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    event.stopPropagation();
    endTour(box);
  });
  show();
  document.querySelector(".map-area").append(box);
}
