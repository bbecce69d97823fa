// The map's panel (loaded before map.js, whose globals it uses when called): the clicked
// frame, its video playing from the start of its clip, the file it comes from (folder, name,
// duration, resolution, frame rate), and the most similar clips. The heading names what
// is playing: the clicked clip, or a similar clip played from its entry.
"use strict";

// A clip's time in words: a stretch, or one moment (a single matched frame; a photo), never
// a stretch of no length.
function clipTime(clip) {
  if (clip.kind === "photo") return "photo";
  return clip.stop > clip.start ? `${clock(clip.start)}–${clock(clip.stop)}` : `at ${clock(clip.start)}`;
}

let selectTicket = 0; // the latest select() or closePanel(): an earlier one's answer is dropped

function frameKey(query) {
  const params = new URLSearchParams(query);
  return `${params.get("source")}:${params.get("frame")}`;
}

async function select(query, frame = null, how = "push") {
  const ticket = ++selectTicket;
  // Marked open at once, so the address names it while it loads.
  panel.dataset.frame = frame ? `${frame.source}:${frame.frame}` : frameKey(query);
  writeHash(how);
  try {
    frame = frame || await getJSON(`${api}frame/?${query}`);
  } catch (error) {
    if (ticket !== selectTicket) return;
    delete panel.dataset.frame;
    overlays.clearLayers();
    clearClipLines();
    writeHash("replace");
    showPanel(element("p", { className: "error", textContent: `That frame is not on this map (${errorText(error)}).` }));
    return;
  }
  if (ticket !== selectTicket) return; // another frame was chosen, or the panel closed, meanwhile
  overlays.clearLayers();
  clearClipLines();
  // The video plays from the start of the clicked frame's clip (CLIP_SECONDS around it), so
  // a click on a clip's last frame does not start at its end.
  const start = Math.max(0, frame.time - state.clip_seconds / 2);
  const selection = element("div", {},
    element("h2", { id: "playing", textContent: frame.name }),
    element("div", { className: "when", textContent: `${clock(frame.time)} · frame ${frame.frame}` }),
    element("img", { className: "frame-image", src: frame.image, alt: `${frame.name} at ${clock(frame.time)}` }),
    ...copyNote(frame),
    element("div", { className: "player" }, mediaElement(frame.kind, frame.video, start, frame.name)),
    fileDetails(frame.file), gifTools(frame));
  showPanel(selection);
  L.circleMarker(toLatLng(frame.x, frame.y), { radius: 7, color: "#fff", weight: 3, fillOpacity: 0 }).addTo(overlays);
  drawPath(frame.source, `${frame.name}: whole video, from the cyan end to the pink`, panel.dataset.frame);
  showSimilar(frame);
}

function showPanel(...content) {
  document.getElementById("selection").replaceChildren(...content);
  document.getElementById("clips").replaceChildren();
  panel.hidden = false;
  withoutStep(() => map.invalidateSize()); // the panel's width is not a step of its own
}

function closePanel(how = "push") {
  selectTicket++;
  panel.hidden = true;
  delete panel.dataset.frame;
  overlays.clearLayers();
  clearClipLines();
  withoutStep(() => map.invalidateSize()); // the panel's width is not a step of its own
  writeHash(how);
}

function mediaElement(kind, url, time, name) {
  // Photos, and GIFs (videos to the pipeline, images to the browser, which animates them).
  if (kind === "photo" || /\.gif$/i.test(name)) return element("img", { className: "frame-image", src: url, alt: name });
  const video = element("video", { controls: true, muted: true, autoplay: true, preload: "auto",
    ariaLabel: `${name}, from ${clock(time)}` });
  video.addEventListener("loadedmetadata", () => { video.currentTime = time; }, { once: true });
  video.addEventListener("error", () => video.replaceWith(element("p", { className: "message",
    textContent: "This file cannot play in the browser (its format or codec); the frames above come from it." })));
  video.src = `${url}#t=${time}`; // a media fragment: the browser starts there, before any seek
  video.dataset.start = time;
  return video;
}

// --- what a frame copies (the collection's copies: duplicates.js) ---

const COPY_KINDS = { "near-duplicate": "a near-duplicate of", copy: "a copy of", contained: "cut from",
  partial: "in part a copy of" };

// "A copy of NAME at 0:12.3", with a button that opens that frame; nothing for an original.
function copyNote(frame) {
  if (!frame.copy_of) return [];
  const original = frame.copy_of.frame;
  const open = element("button", { type: "button", textContent: "open the original",
    ariaLabel: `open ${original.name} at ${clock(original.time)}` });
  open.addEventListener("click", () => select(`source=${original.source}&frame=${original.frame}`, null));
  return [element("p", { className: "copy-note" }, `This frame is ${COPY_KINDS[frame.copy_of.kind] || "a copy of"} `,
    element("strong", { textContent: original.name }), ` at ${clock(original.time)} `, open, " ",
    element("a", { href: `/collections/${collectionId}/duplicates/`, textContent: "all copies" }))];
}

// --- the file a frame comes from ---

function bytes(size) {
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  const power = size > 0 ? Math.min(units.length - 1, Math.floor(Math.log(size) / Math.log(1000))) : 0;
  return `${(size / 1000 ** power).toFixed(power ? 1 : 0)} ${units[power]}`;
}

function fileFacts(file) {
  const facts = [];
  if (file.duration !== null) facts.push(clock(file.duration));
  if (file.width && file.height) facts.push(`${file.width}×${file.height}`);
  if (file.fps) facts.push(`${+file.fps.toFixed(2)} fps`);
  facts.push(bytes(file.size));
  return facts.join(" · ");
}

// Copies through the Clipboard API where the page may (https, localhost), else through a
// selected text field (plain http on a network address).
async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const field = element("textarea", { value: text, readOnly: true });
    document.body.append(field);
    field.select();
    const copied = document.execCommand("copy");
    field.remove();
    if (!copied) throw new Error("the browser refused");
  }
}

function fileDetails(file) {
  if (!file) {
    return element("p", { className: "message file", textContent: "Its file has been removed from the collection." });
  }
  const path = file.path;
  const copy = element("button", { type: "button", className: "copy", textContent: "copy path",
    ariaLabel: `copy the path of ${file.name}` });
  const said = element("span", { className: "copied", role: "status" });
  copy.addEventListener("click", () => copyText(path).then(() => { said.textContent = "copied"; },
    (error) => { said.textContent = `not copied: ${error.message}`; }));
  return element("dl", { className: "file" },
    element("dt", { textContent: "folder" }), element("dd", { className: "folder", textContent: file.folder }),
    element("dt", { textContent: "file" }), element("dd", { className: "name" }, file.name, " ", copy, " ", said),
    element("dt", { textContent: "media" }), element("dd", { className: "facts", textContent: fileFacts(file) }));
}

// --- similar clips ---

// "Other videos only" for similar clips: kept for the next visits.
const OTHER_VIDEOS = "explorer.similar.other-videos";

function otherVideosToggle(frame) {
  const box = element("input", { type: "checkbox", id: "other-videos", checked: localStorage.getItem(OTHER_VIDEOS) === "1" });
  box.addEventListener("change", () => {
    localStorage.setItem(OTHER_VIDEOS, box.checked ? "1" : "0");
    showSimilar(frame);
  });
  return element("label", { className: "toggle" }, box, " other videos only");
}

function clipElement(clip, colour) {
  const item = element("li", { className: "clip" });
  item.style.setProperty("--clip-colour", colour);
  item.dataset.source = clip.source;
  item.dataset.start = clip.start;
  const score = scoreText(clip);
  const strip = element("div", { className: "strip" },
    ...clip.frames.map((f) => element("img", { src: f.image, loading: "lazy", title: clock(f.time), alt: "" })));
  const what = `${clip.name} ${clipTime(clip)}`;
  const play = element("button", { type: "button", textContent: "▶ play", ariaLabel: `play ${what}` });
  play.addEventListener("click", () => playClip(clip));
  const jump = element("button", { type: "button", textContent: "show on map", ariaLabel: `show ${what} on the map` });
  jump.addEventListener("click", () => {
    const middle = clip.frames[Math.floor(clip.frames.length / 2)];
    map.flyTo(toLatLng(middle.x, middle.y), Math.max(map.getZoom(), state.max_zoom - 2));
  });
  item.append(element("div", { className: "title" },
    element("span", { className: "name", textContent: `${clip.name} · ${clipTime(clip)}` }),
    element("span", { className: "score", textContent: score }),
    ...(clip.copy ? [element("span", { className: "copy-badge", textContent: "copy",
      title: "in the same group of copies as the clicked frame's file" })] : [])), strip, play, " ", jump);
  followEntry(item, clip, colour); // map_paths.js: its path while pointed at or focused
  return item;
}

function scoreText(clip) {
  return clip.score === null ? "" : `${Math.round(clip.score * 100)}% alike`;
}

let playTicket = 0;

// Plays a listed clip in the panel; the heading, its times and the file follow it.
async function playClip(clip) {
  const ticket = ++playTicket;
  const selection = document.getElementById("selection");
  if (!selection.querySelector(".player")) { // the most different clips: nothing played yet
    selection.append(element("div", { className: "when" }), element("div", { className: "player" }),
      element("dl", { className: "file" }));
  }
  selection.querySelector(".player").replaceChildren(mediaElement(clip.kind, clip.video, clip.start, clip.name));
  selection.querySelector("h2").textContent = clip.name;
  const score = scoreText(clip);
  selection.querySelector(".when").textContent = `playing ${clipTime(clip)}` + (score ? ` · ${score}` : "");
  let details;
  try {
    details = fileDetails(await getJSON(`/api/sources/${clip.source}/`));
  } catch (error) {
    details = element("p", { className: "error file", textContent: errorText(error) });
  }
  const file = selection.querySelector(".file");
  if (ticket === playTicket && file) file.replaceWith(details); // a clip played since has its own
}

function showClips(title, clips, ...notes) {
  const list = element("ol", { className: "clips" });
  const entries = clips.map((clip, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const item = clipElement(clip, colour);
    list.append(item);
    return [item, clip, colour];
  });
  const section = document.getElementById("clips");
  section.replaceChildren(element("h3", { textContent: title }), ...notes, allPathsToggle(entries),
    clips.length ? list : element("p", { className: "message", textContent: "No other clip matches." }));
}

async function showSimilar(frame) {
  const section = document.getElementById("clips");
  section.replaceChildren(element("p", { className: "message", textContent: "finding similar clips…" }));
  const others = localStorage.getItem(OTHER_VIDEOS) === "1";
  try {
    const found = await getJSON(`${api}similar/?source=${frame.source}&frame=${frame.frame}&exclude_source=${others}`);
    if (panel.dataset.frame !== `${frame.source}:${frame.frame}`) return; // another frame was chosen meanwhile
    queryLine(found.query);
    showClips(`Clips like ${clipTime(found.query)} of ${found.query.name}`, found.clips, otherVideosToggle(frame));
  } catch (error) {
    section.replaceChildren(element("p", { className: "error", textContent: `Similar clips failed: ${errorText(error)}` }));
  }
}

async function showDissimilar() {
  const found = await getJSON(`${api}dissimilar/`);
  delete panel.dataset.frame;
  overlays.clearLayers();
  clearClipLines();
  showPanel(element("h2", { id: "playing", textContent: "Most different clips" }));
  showClips("Chosen to be as different from each other as possible", found.clips);
  writeHash("push");
}
