// semsearch's page: search, then explore why a hit matched. Plain JavaScript, no build step.
// The URL holds the state (?q=…&id=…), so a search or an explanation can be linked and reloaded.
"use strict";

const MAX_COLUMNS = 40; // passage words shown before "show all"
const $ = (id) => document.getElementById(id);
const state = { q: "", k: 10, mode: "hybrid", id: null, queryId: null, data: null, showAll: false, active: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-") || key.startsWith("aria-") || key === "style") node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

function message(text, isError = false) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

async function api(path, params) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(params)) {
    if (value === null || value === undefined) continue;
    for (const v of [].concat(value)) url.searchParams.append(key, v);
  }
  const headers = {};
  const token = sessionStorage.getItem("semsearch-token");
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch(url, { headers });
  if (response.status === 401) {
    $("auth").hidden = false;
    $("token").focus();
    throw new Error("this server needs a token");
  }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

const fmt = (x, digits = 4) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
const pct = (x) => (100 * x).toFixed(1) + "%";

// ---------------------------------------------------------------- search
function snippet(text, words) {
  // a window of the passage around its first matched word, matched words marked
  const unique = [...new Set(words.map((w) => w.replace(/^##/, "").toLowerCase()).filter((w) => w.length > 1))];
  const escaped = unique.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const pattern = escaped.length ? new RegExp("\\b(" + escaped.join("|") + ")\\b", "gi") : null;
  let start = 0;
  if (pattern) {
    const first = text.search(pattern);
    if (first > 120) start = text.lastIndexOf(" ", first - 100) + 1;
  }
  let shown = text.slice(start, start + 320);
  const node = el("p", { class: "snippet" });
  if (start > 0) node.append("…");
  if (pattern) {
    let last = 0;
    for (const match of shown.matchAll(pattern)) {
      node.append(shown.slice(last, match.index), el("mark", { text: match[0] }));
      last = match.index + match[0].length;
    }
    shown = shown.slice(last);
  }
  node.append(shown);
  if (start + 320 < text.length) node.append("…");
  return node;
}

function markedSnippet(hit, words) {
  // the server's best-matching sentence with its marked words; else a window around the reasons
  if (!hit.snippet) return snippet(hit.text, words);
  const { start, marks } = hit.snippet;
  const chars = Array.from(hit.snippet.text); // offsets count code points, as Python does
  const slice = (a, b) => chars.slice(a, b).join("");
  const node = el("p", { class: "snippet" });
  if (start > 0) node.append("…");
  let last = 0;
  for (const [a, b] of marks) {
    node.append(slice(last, a), el("mark", { text: slice(a, b) }));
    last = b;
  }
  node.append(slice(last, chars.length));
  if (start + chars.length < Array.from(hit.text).length) node.append("…");
  return node;
}

function foundBy(hit) {
  const parts = [];
  if (hit.found_by.dense) parts.push(`meaning #${hit.found_by.dense}`);
  if (hit.found_by.lexical) parts.push(`words #${hit.found_by.lexical}`);
  return parts.join(" · ");
}

function renderHits(result) {
  const list = $("hits");
  list.replaceChildren();
  state.queryId = result.query_id;
  if (!result.hits.length) {
    message("No hits.");
    return;
  }
  message("");
  for (const hit of result.hits) {
    const why = hit.why || [];
    const href = "?" + new URLSearchParams({ q: state.q, k: state.k, mode: state.mode, id: hit.passage_id });
    const reasons = el("ul", { class: "reasons", "aria-label": "why" },
      ...why.map((p) => el("li", { text: `${p.query} ↔ ${p.passage} ${pct(p.share)}` })),
      ...(hit.terms || []).map((t) => el("li", { class: "term", text: `“${t.term}” ${pct(t.share)} of BM25` })));
    const link = el("a", { class: "hit", href, "data-id": hit.passage_id },
      el("div", { class: "hit-head" },
        el("span", { class: "rank", text: hit.rank + "." }),
        el("span", { class: "score", text: fmt(hit.cosine ?? hit.score), title: "cosine similarity" }),
        el("span", { class: "found", text: foundBy(hit) }),
        el("span", { class: "doc", text: hit.document_key + (hit.ordinal ? ` · part ${hit.ordinal + 1}` : "") })),
      markedSnippet(hit, why.map((p) => p.passage)),
      reasons);
    link.addEventListener("click", (event) => {
      if (event.metaKey || event.ctrlKey || event.shiftKey) return; // new tab: let the browser go
      event.preventDefault();
      history.pushState(null, "", href);
      openExplanation(hit.passage_id).then(() => {
        if (window.innerWidth <= 820) $("explanation").scrollIntoView(); // stacked layout: show it
      });
    });
    list.append(el("li", {}, link));
  }
}

async function runSearch(q, k, mode) {
  state.q = q;
  state.k = k;
  state.mode = mode;
  $("q").value = q;
  $("k").value = String(k);
  $("mode").value = mode;
  message("Searching…");
  const result = await api("/api/search", { q, k, mode, why: 3 });
  renderHits(result);
}

// ---------------------------------------------------------------- explanation
const POSITIVE = "214, 96, 20"; // orange: adds to the score
const NEGATIVE = "38, 110, 200"; // blue: takes from it

function shade(value, scale) {
  if (!scale || !value) return "transparent";
  const alpha = Math.min(1, Math.abs(value) / scale) * 0.85;
  return `rgba(${value > 0 ? POSITIVE : NEGATIVE}, ${alpha.toFixed(3)})`;
}

function shadedText(target, side, shares) {
  // the text with each word's (or token's) share of the score as its background; offsets count
  // code points (Python's), so the text is sliced as an array of them
  const chars = Array.from(side.text);
  const slice = (a, b) => chars.slice(a, b).join("");
  target.replaceChildren();
  const scale = Math.max(1e-9, ...shares.filter((_, i) => !side.special[i]).map(Math.abs));
  const order = side.spans.map((span, i) => [span, i]).filter(([s, i]) => s[1] > s[0] && !side.special[i]).sort((a, b) => a[0][0] - b[0][0]);
  let at = 0;
  for (const [[start, end], i] of order) {
    if (start < at) continue;
    target.append(slice(at, start));
    target.append(el("span", { class: "w", text: slice(start, end), title: `${side.labels[i]}: ${pct(shares[i])} of the score`, style: `background:${shade(shares[i], scale)}` }));
    at = end;
  }
  target.append(slice(at, chars.length));
}

function visible(side) {
  return side.labels.map((_, i) => i).filter((i) => $("special").checked || !side.special[i]);
}

function columnsShown(data, rows) {
  const cols = visible(data.passage);
  if (state.showAll || cols.length <= MAX_COLUMNS) return { cols, hidden: [] };
  const weight = (j) => rows.reduce((s, i) => s + Math.abs(data.contribution[i][j]), 0);
  const top = [...cols].sort((a, b) => weight(b) - weight(a)).slice(0, MAX_COLUMNS - 1);
  const keep = new Set(top);
  return { cols: cols.filter((j) => keep.has(j)), hidden: cols.filter((j) => !keep.has(j)) };
}

function cellValue(data, i, j, hidden) {
  // one cell, or the "other" column standing for the hidden passage words
  if (j !== "other") return { cosine: data.cosine[i][j], contribution: data.contribution[i][j], word: data.passage.labels[j] };
  const contribution = hidden.reduce((s, h) => s + data.contribution[i][h], 0);
  const cosine = hidden.reduce((s, h) => s + data.cosine[i][h], 0) / hidden.length;
  return { cosine, contribution, word: `other ${hidden.length} words`, mean: true };
}

function renderHeatmap() {
  const data = state.data;
  const mode = document.querySelector("input[name=mode]:checked").value;
  const rows = visible(data.query);
  const { cols, hidden } = columnsShown(data, rows);
  const all = hidden.length ? [...cols, "other"] : cols;
  const table = $("heatmap");
  let scale = 1;
  if (mode === "contribution") {
    scale = 1e-9;
    for (const i of rows) for (const j of all) scale = Math.max(scale, Math.abs(cellValue(data, i, j, hidden).contribution));
  }
  const head = el("tr", {}, el("th", { scope: "col" }));
  for (const j of all) {
    const label = j === "other" ? `other ${hidden.length}` : data.passage.labels[j];
    head.append(el("th", { scope: "col", class: j !== "other" && data.passage.special[j] ? "special" : "", title: label }, el("span", { text: label })));
  }
  const body = el("tbody");
  for (const i of rows) {
    const tr = el("tr", {}, el("th", { scope: "row", text: data.query.labels[i], class: data.query.special[i] ? "special" : "" }));
    for (const j of all) {
      const v = cellValue(data, i, j, hidden);
      const td = el("td", { "data-row": i, "data-col": j, "data-query": data.query.labels[i], "data-passage": v.word, class: j === "other" ? "other" : "" });
      td.style.background = shade(mode === "cosine" ? v.cosine : v.contribution, scale);
      tr.append(td);
    }
    body.append(tr);
  }
  table.replaceChildren(el("thead", {}, head), body);
  table.dataset.mode = mode;
  state.grid = { rows, all, hidden };
  state.active = null;
  const button = $("all-columns");
  const total = visible(data.passage).length;
  button.hidden = total <= MAX_COLUMNS;
  button.textContent = state.showAll ? `show the top ${MAX_COLUMNS - 1} words` : `show all ${total} words`;
  const notes = [];
  if (!$("special").checked && data.special_share) notes.push(`Special tokens (hidden) hold ${pct(data.special_share)} of the score.`);
  if (hidden.length) notes.push(`"other ${hidden.length}" sums the contributions of the passage words not shown (its cosine is their mean).`);
  notes.push(...(data.notes || []));
  $("ex-note").textContent = notes.join(" ");
}

function describe(td) {
  const data = state.data;
  const i = Number(td.dataset.row);
  const j = td.dataset.col === "other" ? "other" : Number(td.dataset.col);
  const v = cellValue(data, i, j, state.grid.hidden);
  const share = data.score ? v.contribution / data.score : 0;
  return {
    html: [el("b", { text: data.query.labels[i] }), " ↔ ", el("b", { text: v.word }), el("br"),
      `${v.mean ? "mean cosine" : "cosine"} ${fmt(v.cosine, 3)}`, el("br"),
      `contribution ${fmt(v.contribution, 5)} (${pct(share)} of the score ${fmt(data.score)})`],
    text: `${data.query.labels[i]} and ${v.word}: cosine ${fmt(v.cosine, 3)}, contribution ${fmt(v.contribution, 5)}, ${pct(share)} of the score`,
  };
}

function showTooltip(td) {
  const tip = $("tooltip");
  const { html, text } = describe(td);
  tip.replaceChildren(...html);
  tip.hidden = false;
  const box = td.getBoundingClientRect();
  const left = Math.min(window.innerWidth - tip.offsetWidth - 8, box.right + 8);
  const top = box.bottom + 8 + tip.offsetHeight > window.innerHeight ? box.top - tip.offsetHeight - 8 : box.bottom + 8;
  tip.style.left = Math.max(4, left) + "px";
  tip.style.top = Math.max(4, top) + "px";
  $("cell-readout").textContent = text;
}

function activate(r, c) {
  const table = $("heatmap");
  const { rows, all } = state.grid;
  r = Math.max(0, Math.min(rows.length - 1, r));
  c = Math.max(0, Math.min(all.length - 1, c));
  table.querySelector("td.active")?.classList.remove("active");
  const td = table.tBodies[0].rows[r].cells[c + 1];
  td.classList.add("active");
  td.scrollIntoView({ block: "nearest", inline: "nearest" });
  state.active = [r, c];
  showTooltip(td);
}

function renderExplanation() {
  const data = state.data;
  $("explanation").hidden = false;
  document.querySelector("main").classList.remove("no-explanation");
  $("ex-title").textContent = `Why ${data.document} (passage ${data.passage_id})`;
  const residual = data.residual === null ? "" : ` · index score ${fmt(data.index_score)} · residual ${Number(data.residual).toExponential(1)}`;
  $("ex-score").textContent = `score ${fmt(data.score)} = the sum of the contribution matrix (${fmt(data.sum)})${residual} · rows: ${data.rows}`;
  shadedText($("ex-query"), data.query, data.query_shares);
  shadedText($("ex-passage"), data.passage, data.passage_shares);
  renderHeatmap();
  const lexical = data.lexical;
  $("ex-words").textContent = !lexical ? "" : lexical.terms.length
    ? `Words (BM25 ${fmt(lexical.bm25, 2)}, a different score from the cosine): ` + lexical.terms.map((t) => `“${t.term}” ${pct(t.share)}`).join(", ")
    : "None of the query's words occur in this passage (BM25 0).";
  $("ex-pairs").replaceChildren(...data.top_pairs.map((p) =>
    el("li", { text: `${p.query} ↔ ${p.passage}${p.count > 1 ? ` ×${p.count}` : ""}: ${pct(p.share)} of the score (cosine ${fmt(p.cosine, 3)})` })));
  for (const a of document.querySelectorAll("a.hit")) a.setAttribute("aria-current", String(Number(a.dataset.id) === data.passage_id));
}

async function openExplanation(id) {
  state.id = id;
  state.showAll = false;
  const level = document.querySelector("input[name=level]:checked").value;
  try {
    message("");
    try {
      if (state.queryId === null || state.queryId === undefined) {
        if (!state.q) throw new Error("search first: an explanation needs its query");
        state.data = await api("/api/explain", { id, q: state.q, level }); // the query was not cached
      } else {
        state.data = await api("/api/explain", { id, query_id: state.queryId, level });
      }
    } catch (error) {
      // the server keeps the last queries' tokens only: past that, one short encode of the text
      if (!state.q || !/query/.test(error.message)) throw error;
      state.data = await api("/api/explain", { id, q: state.q, level });
    }
    renderExplanation();
  } catch (error) {
    message(error.message, true);
  }
}

// ---------------------------------------------------------------- wiring
async function route() {
  const params = new URLSearchParams(location.search);
  const q = params.get("q");
  const id = params.get("id");
  const k = Number(params.get("k") || 10);
  const mode = params.get("mode") || "hybrid";
  try {
    if (q && (q !== state.q || k !== state.k || mode !== state.mode || !$("hits").children.length)) {
      await runSearch(q, k, mode);
    }
    if (id) await openExplanation(Number(id));
    else {
      $("explanation").hidden = true;
      document.querySelector("main").classList.add("no-explanation");
    }
  } catch (error) {
    message(error.message, true);
  }
}

$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  const q = $("q").value.trim();
  if (!q) return message("Type some words to search for.", true);
  const k = Number($("k").value);
  history.pushState(null, "", "?" + new URLSearchParams({ q, k, mode: $("mode").value }));
  state.q = "";
  route();
});

$("auth").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("semsearch-token", $("token").value);
  $("auth").hidden = true;
  state.q = "";
  route();
  loadInfo();
});

for (const input of document.querySelectorAll("input[name=mode]")) input.addEventListener("change", () => state.data && renderHeatmap());
for (const input of document.querySelectorAll("input[name=level]")) input.addEventListener("change", () => state.id && openExplanation(state.id));
$("special").addEventListener("change", () => state.data && renderExplanation());
$("all-columns").addEventListener("click", () => {
  state.showAll = !state.showAll;
  renderHeatmap();
});

const heatmap = $("heatmap");
heatmap.addEventListener("mouseover", (event) => {
  const td = event.target.closest("td");
  if (td) showTooltip(td);
});
heatmap.addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
heatmap.addEventListener("focus", () => state.grid && activate(...(state.active || [0, 0])));
heatmap.addEventListener("blur", () => { $("tooltip").hidden = true; });
heatmap.addEventListener("keydown", (event) => {
  if (!state.grid) return;
  const [r, c] = state.active || [0, 0];
  const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1], Home: [0, -1e9], End: [0, 1e9] };
  if (event.key in moves) {
    event.preventDefault();
    activate(r + moves[event.key][0], c + moves[event.key][1]);
  } else if (event.key === "Escape") {
    $("tooltip").hidden = true;
  }
});

async function loadInfo() {
  try {
    const info = await api("/api/info", {});
    $("store").textContent = `${info.passages.toLocaleString()} passages from ${info.documents.toLocaleString()} documents · ${info.model}`;
    if (info.token_pool === "words") {
      // the store keeps one vector per word: there are no pieces to show
      const tokens = document.querySelector("input[name=level][value=token]");
      tokens.disabled = true;
      tokens.parentElement.title = "this store keeps one vector per word (token_pool: words)";
    }
  } catch (error) {
    /* shown by the search that follows */
  }
}

window.addEventListener("popstate", route);
loadInfo();
route();
