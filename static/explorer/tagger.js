// The tagger on the collection's page: the labelled frames per label and what is missing to
// train, the training form (a job, followed like a clustering), and the tagger in use: its
// validation on held-out videos (accuracy, precision and recall per label, the confusion
// matrix drawn as a heat map) and its earlier versions. Loaded before collection.js, whose
// refresh calls showTagger whenever a job starts or ends. Label names are people's: text only.
"use strict";

const taggerSection = document.getElementById("tagger-section");
const taggerApi = `/api/collections/${taggerSection.dataset.collection}/tagger/`;
const SVG = "http://www.w3.org/2000/svg";

async function showTagger() {
  const data = await getJSON(taggerApi);
  const labelled = Object.entries(data.labelled);
  document.getElementById("tagger-labelled").replaceChildren(...(labelled.length
    ? ["Labelled frames: ", ...labelled.flatMap(([name, frames], i) => [i ? " " : "",
      element("span", { className: "chip", textContent: name }),
      element("span", { className: "label-count", textContent: ` ${frames}` })])]
    : ["No labelled frames yet."]));
  const needed = document.getElementById("tagger-needed");
  needed.textContent = data.needed ? `To train a tagger: ${data.needed}.` : "";
  needed.hidden = !data.needed;
  document.querySelector("#tagger-form button").disabled = Boolean(data.needed);
  const current = document.getElementById("tagger-current");
  current.replaceChildren(...(data.tagger ? taggerElement(data.tagger) : [element("p", { className: "message",
    textContent: "No tagger yet." })]));
  const earlier = data.taggers.filter((t) => !t.in_use);
  const versions = document.getElementById("tagger-versions");
  versions.hidden = !earlier.length;
  versions.querySelector("ol").replaceChildren(...earlier.map((t) => element("li", {
    textContent: `tagger ${t.version} · ${t.head} · ${t.classes.length} label(s) · ` +
      (t.validation ? `accuracy ${t.validation.accuracy.toFixed(3)}` : "not validated") +
      ` · ${new Date(t.created_at).toLocaleString()}` })));
}

function taggerElement(tagger) {
  const v = tagger.validation;
  const summary = element("p", { className: "tagger-summary", textContent: `Tagger ${tagger.version} (${tagger.head} ` +
    `head, ${tagger.classes.length} labels, ${new Date(tagger.created_at).toLocaleString()}): ` + (v
    ? `accuracy ${v.accuracy.toFixed(3)} on ${v.frames} frame(s) of ${v.videos} held-out video(s).`
    : "not validated: every label's frames come from one video. Label frames of a second video.") });
  const notes = [];
  if (tagger.unvalidated.length) {
    notes.push(`Not validated: ${tagger.unvalidated.join(", ")} (all their frames are of one video, which stays ` +
      "in the training).");
  }
  const tuned = tagger.fine_tuned;
  if (tuned && tuned.accuracy !== undefined) {
    notes.push(`Fine-tuned top blocks of Xception (${tuned.epochs} epochs on ${tuned.trained_frames} frame(s)): ` +
      `accuracy ${tuned.accuracy.toFixed(3)} on the same held-out frames, where the frozen head has ` +
      `${v.accuracy.toFixed(3)}. The frozen head tags the collection.`);
  } else if (tuned) {
    notes.push(`Not fine-tuned: ${tuned.note}`);
  }
  const noteElements = notes.map((text) => element("p", { className: "tagger-summary", textContent: text }));
  if (!v) return [summary, ...noteElements];
  // A share of no frames is no figure: precision of a label nothing was predicted as, recall
  // of a label no held-out frame has.
  const predicted = tagger.classes.map((_, j) => v.confusion.reduce((sum, row) => sum + row[j], 0));
  const figure = (value, frames) => (frames ? value.toFixed(2) : "–");
  const rows = v.per_label.map((row, i) => element("tr", {},
    element("td", {}, element("span", { className: "chip", textContent: row.label })),
    element("td", { textContent: figure(row.precision, predicted[i]) }),
    element("td", { textContent: figure(row.recall, row.frames) }),
    element("td", { textContent: String(row.frames) })));
  const table = element("table", { className: "per-label" },
    element("thead", {}, element("tr", {}, ...["label", "precision", "recall", "held-out frames"].map((text) =>
      element("th", { textContent: text })))), element("tbody", {}, ...rows));
  const figures = element("div", { className: "tagger-figures" }, table, confusionMatrix(tagger.classes, v.confusion));
  return [summary, ...noteElements, figures];
}

function svgElement(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

function svgText(text, attributes) {
  const node = svgElement("text", attributes);
  node.textContent = text.length > 18 ? `${text.slice(0, 17)}…` : text;
  node.append(svgElement("title")); // the whole name on hover
  node.lastChild.textContent = text;
  return node;
}

// The confusion matrix as a heat map: rows the label given, columns the label predicted, each
// cell shaded by its share of its row (so a small label's row reads as clearly as a large
// one's) and holding its count.
function confusionMatrix(classes, confusion) {
  const cell = 38;
  const left = 130;
  const top = 110;
  const size = cell * classes.length;
  const svg = svgElement("svg", { class: "confusion", width: left + size + 10, height: top + size + 30,
    role: "img", "aria-label": "confusion matrix: rows the label given, columns the label predicted" });
  classes.forEach((name, i) => {
    svg.append(svgText(name, { x: left - 6, y: top + i * cell + cell / 2 + 4, "text-anchor": "end" }),
      svgText(name, { x: 0, y: 0, transform: `translate(${left + i * cell + cell / 2 + 4},${top - 6}) rotate(-50)` }));
  });
  confusion.forEach((row, i) => {
    const total = row.reduce((a, b) => a + b, 0);
    row.forEach((count, j) => {
      const share = total ? count / total : 0;
      const colour = i === j ? "27, 110, 32" : "176, 0, 32";
      const title = svgElement("title");
      title.textContent = `given ${classes[i]}, predicted ${classes[j]}: ${count} frame(s)`;
      svg.append(svgElement("rect", { x: left + j * cell, y: top + i * cell, width: cell - 2, height: cell - 2,
        fill: count ? `rgba(${colour}, ${0.15 + 0.85 * share})` : "#f0f0f0", "data-row": i, "data-column": j }, title),
      svgElement("text", { x: left + j * cell + cell / 2 - 1, y: top + i * cell + cell / 2 + 4, "text-anchor": "middle",
        class: share > 0.5 ? "count dark" : "count" }, String(count)));
    });
  });
  svg.append(svgElement("text", { x: left + size / 2, y: top + size + 20, "text-anchor": "middle", class: "axis" },
    "predicted →"), svgElement("text", { x: 4, y: top + size + 20, class: "axis" }, "↓ label given"));
  return element("figure", { className: "confusion-figure" }, svg,
    element("figcaption", { textContent: "Confusion on the held-out videos: rows the label given, columns the label " +
      "predicted; green the right answers, red the mistakes, shaded by their share of the row." }));
}

document.getElementById("tagger-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  await runJob(form.querySelector("button[type=submit]"), document.getElementById("tagger-job"),
    document.getElementById("tagger-message"), () => postJSON(taggerApi, { head: form.elements.head.value,
      fine_tune: form.elements.fine_tune.checked }),
    () => showTagger().catch(console.error));
});
