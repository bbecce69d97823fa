// The copies report: each group of copies with its kept file first, and for each pair the
// copy's frame beside the original's, the kind and score, and their aligned time ranges drawn
// as bars (each file's whole length, the copied stretch highlighted); then the exact copies
// passed over at ingest. Editors look again with another threshold (a job, followed here).
"use strict";

const facts = document.getElementById("facts");
const collectionId = facts.dataset.collection;
const api = `/api/collections/${collectionId}/duplicates/`;
const byId = (id) => document.getElementById(id);
const KINDS = { "near-duplicate": "a near-duplicate of", copy: "a copy of", contained: "contained in",
  partial: "in part a copy of" };

function showError(text) {
  byId("message").textContent = text;
  byId("message").hidden = !text;
}

function mapLink(frame, text) {
  return element("a", { href: `/collections/${collectionId}/map/#frame=${frame.source}:${frame.frame}`,
    textContent: text, title: "open this frame on the map" });
}

function thumbnail(frame, member) {
  if (!frame) return element("div", { className: "thumb missing", textContent: "(no frame)" });
  return element("figure", { className: "copy-frame" },
    element("img", { src: frame.image, alt: `${member.name} at ${clock(frame.time)}`, loading: "lazy" }),
    element("figcaption", {}, element("span", { className: "name", textContent: member.name, title: member.path || "" }),
      " ", mapLink(frame, clock(frame.time))));
}

// One file's length as a bar, the stretch [start, stop] of it highlighted; `longest` sets the scale.
function bar(member, start, stop, longest) {
  const length = Math.max(member.duration || 0, stop, 0.001);
  const track = element("div", { className: "track", title: `${member.name}: ${clock(start)} to ${clock(stop)} ` +
    `of ${clock(length)}` });
  track.style.width = `${(100 * length) / longest}%`;
  const part = element("div", { className: "stretch" });
  part.style.left = `${(100 * start) / length}%`;
  part.style.width = `${Math.max(1, (100 * (stop - start)) / length)}%`;
  track.append(part);
  return element("div", { className: "bar-row" }, element("span", { className: "bar-name", textContent: member.name }),
    element("div", { className: "bar-area" }, track),
    element("span", { className: "bar-times", textContent: `${clock(start)}–${clock(stop)}` }));
}

function relationElement(relation, members) {
  const copy = members.get(relation.copy) || { name: "(removed)" };
  const original = members.get(relation.original) || { name: "(removed)" };
  const item = element("li", { className: `relation ${relation.kind}` },
    element("p", { className: "relation-head" },
      element("strong", { textContent: copy.name }), ` is ${KINDS[relation.kind] || relation.kind} `,
      element("strong", { textContent: original.name }),
      element("span", { className: "score", textContent: ` score ${relation.score.toFixed(2)}`,
        title: `${relation.verified} of ${relation.checked} frame pairs compared showed the same picture` })),
    element("div", { className: "side-by-side" }, thumbnail(relation.copy_frame, copy),
      thumbnail(relation.original_frame, original)));
  if (relation.kind !== "near-duplicate") {
    const longest = Math.max(copy.duration || 0, original.duration || 0, relation.copy_stop, relation.original_stop);
    item.append(element("div", { className: "bars" }, bar(copy, relation.copy_start, relation.copy_stop, longest),
      bar(original, relation.original_start, relation.original_stop, longest)));
  }
  return item;
}

function groupElement(group) {
  const members = new Map(group.members.map((member) => [member.source, member]));
  const kept = members.get(group.representative);
  return element("li", { className: "copy-group", id: `group-${group.id}` },
    element("h2", {}, `#${group.id} ${group.kind} · ${group.members.length} files · score ${group.score.toFixed(2)}`),
    element("p", { className: "facts" }, "Kept when copies are hidden: ",
      element("strong", { textContent: kept ? kept.name : "(removed)", title: kept ? kept.path : "" }),
      `; copies: ${group.members.filter((m) => m.source !== group.representative).map((m) => m.name).join(", ")}`),
    ...relationLists(group, members));
}

// Each copy's pair with the kept file (else its best pair) first; the other pairs, which say
// the same through the kept file, folded away.
function relationLists(group, members) {
  const first = new Map();
  for (const relation of group.relations) {
    const known = first.get(relation.copy);
    if (!known || (relation.original === group.representative && known.original !== group.representative)) {
      first.set(relation.copy, relation);
    }
  }
  const main = [...first.values()];
  const others = group.relations.filter((relation) => !main.includes(relation));
  const lists = [element("ol", { className: "relations" }, ...main.map((r) => relationElement(r, members)))];
  if (others.length) {
    lists.push(element("details", {}, element("summary", { textContent: `${others.length} more pair(s)` }),
      element("ol", { className: "relations" }, ...others.map((r) => relationElement(r, members)))));
  }
  return lists;
}

// The first page of groups and exact copies; "show more" appends the next page of the same
// detection (a detection made meanwhile starts the list again).
let shownDetection = null;

async function load(page = 1) {
  const more = byId("more");
  more.disabled = true;
  let report;
  try {
    report = await getJSON(`${api}?page=${page}`);
  } catch (error) {
    if (page === 1) {
      facts.textContent = error.status === 409 ? errorText(error) : "";
      byId("groups").replaceChildren();
      byId("exact").replaceChildren();
      byId("exact-section").hidden = true;
      more.hidden = true;
    }
    if (error.status !== 409) showError(errorText(error));
    more.disabled = false;
    return;
  }
  if (page > 1 && report.detection !== shownDetection) {
    load();
    return;
  }
  shownDetection = report.detection;
  const groups = report.groups.map(groupElement);
  const exact = report.exact.map((found) => element("li", {},
    element("strong", { textContent: found.path }), " — the same bytes: ", found.copies.join(", ")));
  if (page === 1) {
    byId("threshold").value = report.threshold;
    facts.textContent = `${report.group_count} group(s) of copies at score ≥ ${report.threshold}: ` +
      `${report.copied_frames} frame(s) copy a frame of a more original file` +
      (report.current_map ? "." : " (found in an earlier map: look again for the one shown now).");
    byId("groups").replaceChildren(...groups);
    byId("exact").replaceChildren(...exact);
  } else {
    byId("groups").append(...groups);
    byId("exact").append(...exact);
  }
  byId("exact-section").hidden = !report.exact_count;
  more.hidden = report.page >= report.pages;
  more.disabled = false;
  more.textContent = `Show more (page ${report.page + 1} of ${report.pages})`;
  more.onclick = () => load(report.page + 1);
}

byId("threshold-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const threshold = parseFloat(byId("threshold").value);
  runJob(byId("look-again"), byId("jobs"), byId("message"), () => postJSON(api, { threshold }), () => load());
});

hideEditorOnly();
load();
