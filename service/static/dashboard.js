// The evonorm-search dashboard: searches, live progress, the best value so far against the baselines,
// the Pareto front (proxy or validated), the best layers with their rung of the fidelity ladder, exports.
// Talks only to this server's /api/v1; every asset is served by the app (no external network).
// State lives in the URL hash (#search=3&layer=17&front=validated), so views can be linked and reloaded.
"use strict";

const API = "/api/v1";
const KEY_STORAGE = "evonorm-api-key";
const FRONT_ROWS = 25; // best layers listed
const CLOUD_POINTS = 500; // evaluated candidates drawn behind the front
const MEAN_AXIS = "mean"; // the validated front's axis of the mean over the target networks
const RUNG_NAMES = { 0: "proxies", 1: "target task" };

const state = {
  searchId: null,
  search: null, // the latest SearchStatus
  layerId: null,
  stream: null, // AbortController of the open event stream
  chart: null,
  progressChart: null, // the best value so far (Chart.js), redrawn in place
  progress: null, // the latest GET .../progress answer
  nextSearchCursor: null,
  frontRefresh: null, // pending timer for a throttled reload of the front
  rung: "proxy", // the front the chart shows: "proxy" (rung 0) or "validated" (rung 1, the target task)
  objectiveNames: [], // the search's objectives: the proxy front's axes
};

const $ = (id) => document.getElementById(id);

// -- talking to the API ---------------------------------------------------------------------------

function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

function headers() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.message) message = body.message;
    } catch (_) {
      // not JSON: keep the status line
    }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return response;
}

async function getJson(path) {
  return (await api(path)).json();
}

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    for (const item of [].concat(value)) {
      if (item !== null && item !== undefined) search.append(name, item);
    }
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// -- small view helpers ---------------------------------------------------------------------------

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function showMessage(text, isError = false) {
  const box = $("message");
  box.textContent = text;
  box.classList.toggle("error", isError);
  box.hidden = !text;
}

function fmtNumber(value, digits = 4) {
  if (value === null || value === undefined) return "–";
  if (Math.abs(value) >= 1000) return value.toLocaleString(undefined, { maximumFractionDigits: 1 });
  return Number(value).toFixed(digits);
}

function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

function fmtTime(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

function renderFormula(latex, target, displayMode) {
  target.replaceChildren();
  if (!latex) {
    target.append(el("span", { class: "muted" }, "(formula too large to print)"));
    return;
  }
  // throwOnError false: a construct KaTeX lacks shows as red source instead of breaking the page.
  window.katex.render(latex, target, { throwOnError: false, displayMode });
}

function facts(target, rows) {
  target.replaceChildren(...rows.map(([label, value]) => el("div", {}, el("dt", {}, label), el("dd", {}, value))));
}

// -- the URL hash ---------------------------------------------------------------------------------

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const number = (name) => (params.has(name) && /^\d+$/.test(params.get(name)) ? Number(params.get(name)) : null);
  return { search: number("search"), layer: number("layer"), front: params.get("front") === "validated" ? "validated" : "proxy" };
}

function writeHash() {
  const params = new URLSearchParams();
  if (state.searchId !== null) params.set("search", state.searchId);
  if (state.layerId !== null) params.set("layer", state.layerId);
  if (state.rung !== "proxy") params.set("front", state.rung); // the proxy front is the default view
  const hash = `#${params.toString()}`;
  if (location.hash !== hash) history.replaceState(null, "", hash);
}

// -- searches list --------------------------------------------------------------------------------

async function loadSearches(append = false) {
  const cursor = append ? state.nextSearchCursor : null;
  const page = await getJson(`${API}/searches${query({ limit: 50, cursor })}`);
  const list = $("search-list");
  if (!append) list.replaceChildren();
  for (const search of page.items) {
    list.append(
      el(
        "li",
        { "data-search-id": search.id, class: search.id === state.searchId ? "selected" : "", onclick: () => selectSearch(search.id) },
        el("span", { class: "name", title: search.name }, `#${search.id} ${search.name}`),
        el("span", { class: `state ${search.state}` }, search.state),
      ),
    );
  }
  state.nextSearchCursor = page.next_cursor;
  $("more-searches").hidden = !page.next_cursor;
  $("no-searches").hidden = list.children.length > 0;
}

function markSelected() {
  for (const item of $("search-list").children) {
    item.classList.toggle("selected", Number(item.dataset.searchId) === state.searchId);
  }
}

// -- one search -----------------------------------------------------------------------------------

async function selectSearch(searchId) {
  if (state.searchId !== searchId) closeLayer();
  state.searchId = searchId;
  writeHash();
  markSelected();
  showMessage("");
  try {
    const status = await getJson(`${API}/searches/${searchId}`);
    renderStatus(status);
    fillObjectiveChoices(status.objectives);
    await Promise.all([loadFront(), loadProgress()]);
    followEvents(searchId);
  } catch (error) {
    showMessage(`search ${searchId}: ${error.message}`, true);
  }
}

function renderStatus(status) {
  const previous = state.search;
  state.search = status;
  $("search-view").hidden = false;
  $("search-name").textContent = `#${status.id} ${status.name}`;
  const badge = $("search-state");
  badge.textContent = status.state;
  badge.className = `state ${status.state}`;
  $("progress-bar").style.width = `${Math.round(100 * (status.progress || 0))}%`;
  $("stop-search").disabled = !["running", "created"].includes(status.state);
  $("resume-search").disabled = !["created", "stopped", "failed"].includes(status.state);
  const counts = status.counts;
  facts($("search-facts"), [
    ["proposed / budget", `${counts.total} / ${status.budget ?? "–"}`],
    ["finished", counts.finished],
    ["evaluated", counts.evaluated],
    ["front size", status.front_size],
    ["hypervolume", fmtNumber(status.hypervolume)],
    ["throughput", status.throughput_per_hour === null ? "–" : `${fmtNumber(status.throughput_per_hour, 1)} / h`],
    ["elapsed", fmtDuration(status.elapsed_seconds)],
    ["estimated to finish", fmtDuration(status.estimated_seconds_to_finish)],
    ["started", fmtTime(status.started_at)],
  ]);
  const error = $("search-error");
  error.textContent = status.error || "";
  error.hidden = !status.error;
  renderFunnel(counts);
  renderBest(status);
  renderLadder(status.ladder || []);
  if (previous && previous.id === status.id && previous.front_size !== status.front_size) scheduleFrontReload();
  if (previous && previous.id === status.id && previous.counts.evaluated !== status.counts.evaluated) {
    scheduleFrontReload(); // the front's reload brings the best value so far with it
  }
}

function renderFunnel(counts) {
  const rows = [el("tr", {}, el("th", {}, "status"), el("th", {}, "candidates"))];
  for (const [status, count] of Object.entries(counts.by_status)) {
    rows.push(el("tr", {}, el("td", {}, status), el("td", { class: "num" }, count)));
    if (status === "rejected") {
      for (const [stage, n] of Object.entries(counts.rejected_by_stage)) {
        if (n) rows.push(el("tr", {}, el("td", {}, `\u00a0\u00a0\u2514 ${stage}`), el("td", { class: "num" }, n)));
      }
    }
  }
  rows.push(el("tr", {}, el("td", {}, "duplicate hits"), el("td", { class: "num" }, counts.duplicate_hits)));
  $("funnel").replaceChildren(...rows);
}

// The ladder's rungs as `evonorm-search status` shows them; hidden for a search without a ladder.
function renderLadder(rungs) {
  $("ladder-panel").hidden = rungs.length === 0;
  const header = el("tr", {}, ...["rung", "", "complete", "promoted", "pending", "training examples"].map((h) => el("th", {}, h)));
  const rows = rungs.map((r) =>
    el(
      "tr",
      {},
      el("td", { class: "num" }, r.rung),
      el("td", {}, r.name),
      el("td", { class: "num" }, r.evaluated),
      el("td", { class: "num" }, r.promoted),
      el("td", { class: "num" }, r.pending),
      el("td", { class: "num" }, r.examples.toLocaleString()),
    ),
  );
  $("ladder").replaceChildren(header, ...rows);
}

function renderBest(status) {
  const rows = [el("tr", {}, el("th", {}, "objective"), el("th", {}, "best"), el("th", {}, "candidate"))];
  for (const objective of status.objectives) {
    const best = status.best[objective.name];
    const arrow = objective.direction === "max" ? "\u2191" : "\u2193";
    rows.push(
      el(
        "tr",
        {},
        el("td", {}, `${objective.label ?? objective.name} ${arrow}`),
        el("td", { class: "num" }, best ? fmtNumber(best.value) : "–"),
        el("td", {}, best ? el("a", { href: "#", onclick: (e) => { e.preventDefault(); openLayer(best.candidate_id); } }, `#${best.candidate_id}`) : "–"),
      ),
    );
  }
  $("best-values").replaceChildren(...rows);
}

// -- live progress (server-sent events over fetch, so an API key can travel in a header) ----------

function followEvents(searchId) {
  if (state.stream) state.stream.abort();
  const controller = new AbortController();
  state.stream = controller;
  $("live").hidden = true;
  readEvents(searchId, controller).catch((error) => {
    if (error.name !== "AbortError") showMessage(`live progress stopped: ${error.message}`, true);
  });
}

async function readEvents(searchId, controller) {
  let retryMs = 3000;
  while (!controller.signal.aborted && state.searchId === searchId) {
    const response = await api(`${API}/searches/${searchId}/events`, { signal: controller.signal });
    $("live").hidden = false;
    const ended = await consumeStream(response, (event) => {
      if (event.retry) retryMs = event.retry;
      if (event.event === "progress") renderStatus(JSON.parse(event.data));
      if (event.event === "end") scheduleFrontReload(0);
    });
    $("live").hidden = true;
    if (ended) return; // the search reached completed, stopped or failed
    await new Promise((resolve) => setTimeout(resolve, retryMs));
  }
}

// Reads an event stream; calls onEvent for each event; resolves true when an `end` event arrived.
async function consumeStream(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { data: "" };
  let ended = false;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return ended;
    buffer += value;
    let newline;
    while ((newline = buffer.search(/\r?\n/)) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + (buffer[newline] === "\r" ? 2 : 1));
      if (line === "") {
        if (event.event || event.data) {
          onEvent(event);
          if (event.event === "end") ended = true;
        }
        event = { data: "" };
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "data") event.data += (event.data ? "\n" : "") + text;
        else if (field === "event") event.event = text;
        else if (field === "retry" && /^\d+$/.test(text)) event.retry = Number(text);
      }
    }
  }
}

// -- the best value so far -------------------------------------------------------------------------
// One objective at a time (their scales differ): its best value over the evaluated candidates as a
// stepped line, each evaluated baseline a dashed line labelled with its name. Reloaded whenever the event
// stream reports new evaluations (with the front, see scheduleFrontReload).

const PROGRESS_COLOUR = "#d9480f";
const BASELINE_COLOURS = ["#1864ab", "#2b8a3e", "#862e9c", "#5c940d", "#a61e4d", "#495057"];

async function loadProgress() {
  const searchId = state.searchId;
  const progress = await getJson(`${API}/searches/${searchId}/progress`);
  if (searchId !== state.searchId) return; // another search was chosen meanwhile
  state.progress = progress;
  fillProgressChoices(progress.objectives);
  drawProgress();
}

function fillProgressChoices(objectives) {
  const select = $("progress-objective");
  const names = objectives.map((o) => o.name);
  const owner = String(state.searchId);
  const keep = names.includes(select.value) && select.dataset.owner === owner ? select.value : names[0];
  select.replaceChildren(...objectives.map((o) => el("option", { value: o.name }, o.label ?? o.name)));
  select.value = keep;
  select.dataset.owner = owner;
}

// The best value's steps, held to the last evaluated candidate (that last point sets no new best: no id).
function progressPoints(objective, evaluated) {
  const points = objective.steps.map((s) => ({ x: s.evaluated, y: s.value, id: s.candidate_id }));
  const last = points[points.length - 1];
  if (last && evaluated > last.x) points.push({ x: evaluated, y: last.y, id: null });
  return points;
}

function drawProgress() {
  const progress = state.progress;
  const objective = progress && progress.objectives.find((o) => o.name === $("progress-objective").value);
  if (!objective) return;
  const name = objective.label ?? objective.name;
  const right = Math.max(progress.evaluated, 1);
  const lines = progress.baselines
    .filter((b) => objective.name in b.objectives)
    .map((b, i) => baselineLine(b, objective.name, right, BASELINE_COLOURS[i % BASELINE_COLOURS.length]));
  const datasets = [
    {
      label: `best ${name} so far`,
      data: progressPoints(objective, progress.evaluated),
      showLine: true,
      stepped: "after",
      borderColor: PROGRESS_COLOUR,
      backgroundColor: PROGRESS_COLOUR,
      pointRadius: (context) => (context.raw && context.raw.id !== null ? 3 : 0),
    },
    ...lines,
  ];
  renderProgressChart(datasets, name);
  const plot = $("progress-plot");
  plot.dataset.objective = objective.name;
  plot.dataset.baselineLines = String(lines.length);
  $("progress-note").textContent = progress.evaluated
    ? `${progress.evaluated} evaluated candidates; a point marks each new best (click it to open the layer).`
    : "No evaluated candidates yet.";
}

function baselineLine(baseline, objectiveName, right, colour) {
  const y = baseline.objectives[objectiveName];
  return {
    label: `baseline ${baseline.label}`,
    data: [{ x: 1, y, tag: baseline.label }, { x: right, y, tag: baseline.label }],
    lineLabel: baseline.label,
    showLine: true,
    borderDash: [6, 4],
    borderWidth: 1.5,
    borderColor: colour,
    backgroundColor: colour,
    pointRadius: 0,
    pointHitRadius: 4,
  };
}

// Writes each baseline's name on its line, right-aligned inside the chart area: never past its right
// edge, whatever the width (a long name starts no further left than the area's left edge). Lines of
// equal or close values get their labels stacked apart (freeBaseline); where each was drawn is kept in
// chart.$labelBoxes.
const lineLabels = {
  id: "lineLabels",
  afterDatasetsDraw(chart) {
    const { ctx, chartArea: area } = chart;
    const boxes = [];
    chart.data.datasets.forEach((dataset, index) => {
      if (!dataset.lineLabel) return;
      const points = chart.getDatasetMeta(index).data;
      if (!points.length) return;
      ctx.save();
      ctx.font = `${LABEL_FONT_PX}px sans-serif`;
      ctx.fillStyle = dataset.borderColor;
      const text = dataset.lineLabel;
      const width = Math.min(ctx.measureText(text).width, area.right - area.left - 8);
      const left = Math.max(area.left + 4, area.right - 4 - width);
      const wanted = Math.min(area.bottom - 2, Math.max(area.top + LABEL_FONT_PX, points[0].y - 4));
      const baseline = freeBaseline(boxes, left, left + width, wanted, area);
      ctx.fillText(text, left, baseline, width); // squeezed to `width` rather than cut at the edge
      ctx.restore();
      boxes.push({ text, left, right: left + width, top: baseline - LABEL_FONT_PX, bottom: baseline });
    });
    chart.$labelBoxes = boxes;
  },
};

function renderProgressChart(datasets, name) {
  if (state.progressChart) {
    state.progressChart.data.datasets = datasets;
    state.progressChart.options.scales.y.title.text = name;
    state.progressChart.update();
    return;
  }
  state.progressChart = new window.Chart($("progress-plot"), {
    type: "scatter",
    data: { datasets },
    plugins: [lineLabels],
    options: {
      animation: false,
      maintainAspectRatio: false,
      scales: {
        x: { title: { display: true, text: "evaluated candidates" }, min: 1, ticks: { precision: 0 } },
        y: { title: { display: true, text: name } },
      },
      plugins: {
        // The baselines are named on their lines: the legend keeps only the best value's entry.
        legend: { labels: { filter: (item, data) => !data.datasets[item.datasetIndex].lineLabel } },
        tooltip: {
          callbacks: {
            label: (item) =>
              item.dataset.lineLabel
                ? `baseline ${item.dataset.lineLabel}: ${fmtNumber(item.raw.y)}`
                : `after ${item.raw.x}: ${fmtNumber(item.raw.y)}${item.raw.id ? ` (#${item.raw.id})` : ""}`,
          },
        },
      },
      layout: { padding: { right: 8, top: 8 } },
      onClick: (_event, elements) => {
        const raw = elements.length ? elements[0].element.$context.raw : null;
        if (raw && raw.id) openLayer(raw.id);
      },
    },
  });
}

// -- the Pareto front ---------------------------------------------------------------------------------

function fillObjectiveChoices(objectives) {
  state.objectiveNames = objectives.map((o) => o.name);
}

// The x and y choices: the search's objectives on the proxy front, the target networks (and their mean)
// on the validated one. A choice survives a reload of the same search and front.
function fillAxisChoices(names) {
  const owner = `${state.searchId}/${state.rung}`;
  for (const [id, fallback] of [["x-objective", 0], ["y-objective", Math.min(1, names.length - 1)]]) {
    const select = $(id);
    const keep = names.includes(select.value) && select.dataset.owner === owner ? select.value : names[fallback];
    select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    select.value = keep;
    select.dataset.owner = owner;
  }
}

function scheduleFrontReload(delay = 2000) {
  if (state.frontRefresh) return;
  state.frontRefresh = setTimeout(() => {
    state.frontRefresh = null;
    loadFront().catch((error) => showMessage(`Pareto front: ${error.message}`, true));
    loadProgress().catch((error) => showMessage(`best value so far: ${error.message}`, true));
  }, delay);
}

async function loadFront() {
  const searchId = state.searchId;
  const fronts = await loadFronts(searchId);
  if (searchId !== state.searchId) return; // another search was chosen meanwhile
  if (state.rung === "validated") {
    showValidatedFront(fronts);
    return;
  }
  fillAxisChoices(state.objectiveNames);
  const x = $("x-objective").value;
  const y = $("y-objective").value;
  const base = `${API}/searches/${searchId}`;
  const [pair, all, cloud, baselines] = await Promise.all([
    getJson(`${base}/pareto${query({ objective: x === y ? [x] : [x, y] })}`),
    getJson(`${base}/pareto`),
    getJson(`${base}/candidates${query({ sort: x, limit: CLOUD_POINTS })}`),
    getJson(`${base}/baselines`),
  ]);
  if (searchId !== state.searchId || state.rung !== "proxy") return; // the view changed meanwhile
  const evaluatedBaselines = baselines.filter((b) => b.objectives);
  drawPlot(x, y, pair.points, cloud.items, evaluatedBaselines);
  renderFrontTable(all, evaluatedBaselines, validatedIds(fronts));
}

// The fronts at each rung (GET .../fronts, `pareto --json`'s JSON). A search whose stored configuration
// this version cannot read (409) has only its proxy front: an empty validated one stands in.
async function loadFronts(searchId) {
  try {
    return await getJson(`${API}/searches/${searchId}/fronts`);
  } catch (error) {
    if (error.status !== 409) throw error;
    return { validated: [], validated_baselines: [], proxy: [], baselines: [] };
  }
}

// Layers and baselines trained on the target task: rung 1 of the ladder, every other front layer rung 0.
function validatedIds(fronts) {
  return new Set(fronts.validated.concat(fronts.validated_baselines).map((row) => row.candidate));
}

function rungOf(candidateId, validated) {
  return rungBadge(validated.has(candidateId) ? 1 : 0);
}

function rungBadge(rung) {
  return el("span", { class: `rung rung-${rung}`, title: RUNG_NAMES[rung] }, `${rung} ${RUNG_NAMES[rung]}`);
}

// Writes the label (`tag`) of each point of a labelled dataset beside it: baselines and validated layers
// must be readable without hovering. A label that would leave the chart area goes to the point's other
// side, and stays between its top and bottom; where each was drawn is kept in chart.$labelBoxes.
const LABEL_FONT_PX = 12;
// Layers of equal scores (common early in a search) sit on one point: their labels are stacked one line
// apart instead of printed over each other, downwards while the chart area has room, else upwards.
function freeBaseline(boxes, left, right, wanted, area) {
  const line = LABEL_FONT_PX + 2;
  const overlaps = (y) => boxes.some((b) => left < b.right && right > b.left && y - LABEL_FONT_PX < b.bottom && y > b.top);
  for (const step of [line, -line]) {
    for (let y = wanted; y <= area.bottom - 2 && y >= area.top + LABEL_FONT_PX; y += step) {
      if (!overlaps(y)) return y;
    }
  }
  return wanted; // no free line: overlap rather than leave the chart
}

const pointLabels = {
  id: "pointLabels",
  afterDatasetsDraw(chart) {
    const { ctx, chartArea: area } = chart;
    const boxes = [];
    chart.data.datasets.forEach((dataset, index) => {
      if (!dataset.labelled) return;
      chart.getDatasetMeta(index).data.forEach((element, i) => {
        const text = dataset.data[i].tag;
        ctx.save();
        ctx.fillStyle = dataset.borderColor;
        ctx.font = `${LABEL_FONT_PX}px sans-serif`;
        const width = ctx.measureText(text).width;
        const fitsRight = element.x + 8 + width <= area.right;
        const left = fitsRight ? element.x + 8 : Math.max(area.left, element.x - 8 - width);
        const wanted = Math.min(area.bottom - 2, Math.max(area.top + LABEL_FONT_PX, element.y - 6));
        const baseline = freeBaseline(boxes, left, left + width, wanted, area);
        ctx.fillText(text, left, baseline);
        ctx.restore();
        boxes.push({ text, left, right: left + width, top: baseline - LABEL_FONT_PX, bottom: baseline });
      });
    });
    chart.$labelBoxes = boxes;
  },
};

function drawPlot(x, y, front, cloud, baselines) {
  const point = (c) => ({ x: c.objectives[x], y: c.objectives[y], id: c.candidate_id ?? c.id });
  const frontPoints = front.map(point).sort((a, b) => a.x - b.x);
  const frontIds = new Set(frontPoints.map((p) => p.id));
  const cloudPoints = cloud.filter((c) => c.objectives && !frontIds.has(c.id)).map(point);
  const datasets = [
    {
      label: `Pareto front over ${x} and ${y} (${frontPoints.length})`,
      data: frontPoints,
      backgroundColor: "#d9480f",
      borderColor: "#d9480f",
      pointRadius: 5,
      pointHoverRadius: 7,
      showLine: true,
      stepped: false,
    },
    {
      label: `other evaluated candidates (best ${cloudPoints.length} by ${x})`,
      data: cloudPoints,
      backgroundColor: "rgba(90, 100, 120, 0.35)",
      pointRadius: 3,
    },
    baselineDataset(`baselines (${baselines.length})`, baselines.map((b) => ({ ...point(b), tag: b.label }))),
  ];
  renderChart(datasets, x, y, "proxy");
  $("pareto-plot").dataset.frontPoints = String(frontPoints.length);
  $("pareto-plot").dataset.baselinePoints = String(baselines.length);
  $("plot-note").textContent = frontPoints.length
    ? "Click a point to open its layer."
    : "No evaluated candidates yet.";
}

function baselineDataset(label, data) {
  return {
    label,
    data: data.map((p) => ({ ...p, baseline: true })),
    labelled: true,
    backgroundColor: "#1864ab",
    borderColor: "#1864ab",
    pointStyle: "triangle",
    pointRadius: 7,
    pointHoverRadius: 9,
  };
}

// One chart for both fronts: the datasets and axis titles change, the canvas stays.
function renderChart(datasets, x, y, rung) {
  if (state.chart) {
    state.chart.data.datasets = datasets;
    state.chart.options.scales.x.title.text = x;
    state.chart.options.scales.y.title.text = y;
    state.chart.update();
  } else {
    state.chart = new window.Chart($("pareto-plot"), {
      type: "scatter",
      data: { datasets },
      plugins: [pointLabels],
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: { x: { title: { display: true, text: x } }, y: { title: { display: true, text: y } } },
        plugins: {
          tooltip: {
            callbacks: {
              label: (item) =>
                `${item.raw.baseline ? `baseline ${item.raw.tag}` : `#${item.raw.id}`}: ` +
                `${fmtNumber(item.raw.x)}, ${fmtNumber(item.raw.y)}`,
            },
          },
        },
        // Room on the right for the labels of the points at the edge (they are moved inside, see pointLabels).
        layout: { padding: { right: 12, top: 8 } },
        onClick: (_event, elements) => {
          if (elements.length) openLayer(elements[0].element.$context.raw.id);
        },
      },
    });
  }
  $("pareto-plot").dataset.rung = rung;
}

function renderFrontTable(front, baselines, validated) {
  $("front-table-note").textContent = "(the front over all objectives, then the baselines; rung 1: also trained on the target task)";
  const objectives = front.objectives;
  const header = el(
    "tr",
    {},
    el("th", {}, "#"),
    el("th", {}, "rung"),
    el("th", {}, "formula"),
    ...objectives.map((o) => el("th", {}, `${o.name} ${o.direction === "max" ? "\u2191" : "\u2193"}`)),
    el("th", {}, "export"),
  );
  const rows = front.points.slice(0, FRONT_ROWS).map((point) => {
    const formula = el("td", { class: "formula-cell" });
    renderFormula(point.latex, formula, false);
    const download = el(
      "button",
      { type: "button", class: "download-module", onclick: (e) => { e.stopPropagation(); downloadExport(point.candidate_id, "module.py"); } },
      "module.py",
    );
    return el(
      "tr",
      { class: "layer-row", "data-candidate-id": point.candidate_id, onclick: () => openLayer(point.candidate_id) },
      el("td", {}, `#${point.candidate_id}`),
      el("td", {}, rungOf(point.candidate_id, validated)),
      formula,
      ...objectives.map((o) => el("td", { class: "num" }, fmtNumber(point.objectives[o.name]))),
      el("td", {}, download),
    );
  });
  const references = baselines.map((b) =>
    el(
      "tr",
      { class: "layer-row baseline-row", "data-candidate-id": b.id, onclick: () => openLayer(b.id) },
      el("td", {}, el("span", { class: "badge" }, "baseline")),
      el("td", {}, rungOf(b.id, validated)),
      el("td", { class: "formula-cell" }, `${b.label}: ${b.dsl}`),
      ...objectives.map((o) => el("td", { class: "num" }, fmtNumber(b.objectives[o.name]))),
      el("td", {}, ""),
    ),
  );
  $("front-table").replaceChildren(header, ...rows, ...references);
  if (!rows.length) $("front-table").append(el("tr", {}, el("td", { colspan: 4, class: "muted" }, "No evaluated candidates yet.")));
}

// -- the validated front (rung 1: the target task) ------------------------------------------------------

function targetAxes(fronts) {
  const rows = fronts.validated.concat(fronts.validated_baselines);
  const architectures = [...new Set(rows.flatMap((row) => Object.keys(row.per_architecture)))].sort();
  return [...architectures, MEAN_AXIS];
}

function targetValue(row, axis) {
  return axis === MEAN_AXIS ? row.mean : row.per_architecture[axis];
}

function showValidatedFront(fronts) {
  fillAxisChoices(targetAxes(fronts));
  const x = $("x-objective").value;
  const y = $("y-objective").value;
  drawValidatedPlot(x, y, fronts);
  renderValidatedTable(fronts);
}

// Target mean accuracy per target network: each validated layer labelled with its id, each validated
// baseline with its name, so the layers read against the baselines without hovering.
function drawValidatedPlot(x, y, fronts) {
  const point = (row) => ({ x: targetValue(row, x), y: targetValue(row, y), id: row.candidate });
  const layers = fronts.validated.map((row) => ({ ...point(row), tag: `#${row.candidate}` }));
  const baselines = fronts.validated_baselines.map((row) => ({ ...point(row), tag: row.label }));
  const datasets = [
    {
      label: `validated layers (${layers.length})`,
      data: layers,
      labelled: true,
      backgroundColor: "#d9480f",
      borderColor: "#d9480f",
      pointRadius: 6,
      pointHoverRadius: 8,
    },
    baselineDataset(`validated baselines (${baselines.length})`, baselines),
  ];
  renderChart(datasets, `target accuracy: ${x}`, `target accuracy: ${y}`, "validated");
  $("pareto-plot").dataset.frontPoints = String(layers.length);
  $("pareto-plot").dataset.baselinePoints = String(baselines.length);
  $("plot-note").textContent = layers.length
    ? "Mean target accuracy over the stored target seeds. Click a point to open its layer."
    : "No layer trained on the target task yet: a search with a `fidelities:` ladder promotes its best there; " +
      "`evonorm-search validate SEARCH_ID` does it by hand.";
}

function renderValidatedTable(fronts) {
  $("front-table-note").textContent = "(trained on the target task, best mean first, then the validated baselines)";
  const architectures = targetAxes(fronts).filter((axis) => axis !== MEAN_AXIS);
  const references = fronts.validated_baselines.map((b) => b.label);
  const header = el(
    "tr",
    {},
    ...["#", "rung", "layer", "mean ± std", ...architectures, "seeds", ...references.map((r) => `vs ${r}`)].map((h) => el("th", {}, h)),
  );
  const row = (r, isBaseline) =>
    el(
      "tr",
      { class: `layer-row validated-row${isBaseline ? " baseline-row" : ""}`, "data-candidate-id": r.candidate, onclick: () => openLayer(r.candidate) },
      el("td", {}, isBaseline ? el("span", { class: "badge" }, "baseline") : `#${r.candidate}`),
      el("td", {}, rungBadge(r.rung)),
      el("td", { class: "formula-cell" }, el("code", {}, isBaseline ? `${r.label}: ${r.layer}` : r.layer)),
      el("td", { class: "num" }, r.mean === null ? "–" : `${fmtNumber(r.mean)} ± ${fmtNumber(r.std)}`),
      ...architectures.map((a) => el("td", { class: "num" }, fmtNumber(r.per_architecture[a]))),
      el("td", { class: "num" }, r.seeds.join(", ")),
      ...references.map((ref) => el("td", { class: "num" }, ref in r.vs_baselines ? fmtSigned(r.vs_baselines[ref]) : "")),
    );
  const rows = fronts.validated.map((r) => row(r, false)).concat(fronts.validated_baselines.map((r) => row(r, true)));
  $("front-table").replaceChildren(header, ...rows);
  if (!rows.length) $("front-table").append(el("tr", {}, el("td", { colspan: 4, class: "muted" }, "No layer trained on the target task yet.")));
}

function fmtSigned(value) {
  if (value === null || value === undefined) return "–";
  return `${value >= 0 ? "+" : ""}${fmtNumber(value)}`;
}

// -- one layer ------------------------------------------------------------------------------------

async function openLayer(candidateId) {
  try {
    const layer = await getJson(`${API}/candidates/${candidateId}`);
    state.layerId = candidateId;
    writeHash();
    renderLayer(layer);
  } catch (error) {
    showMessage(`candidate ${candidateId}: ${error.message}`, true);
  }
}

function closeLayer() {
  state.layerId = null;
  $("layer-view").hidden = true;
  writeHash();
}

function renderLayer(layer) {
  $("layer-view").hidden = false;
  $("layer-title").textContent =
    layer.role === "baseline"
      ? `Baseline ${layer.label} (#${layer.id}, search #${layer.search_id})`
      : `Layer #${layer.id} (search #${layer.search_id}, birth ${layer.birth})`;
  renderFormula(layer.formula.latex, $("layer-formula"), true);
  $("layer-dsl").textContent = layer.formula.text;
  const objectives = Object.entries(layer.objectives || {}).map(([name, value]) => [name, fmtNumber(value)]);
  facts($("layer-facts"), [
    ["status", layer.rejection_stage ? `${layer.status} (${layer.rejection_stage})` : layer.status],
    ["highest rung", layer.rung === null ? "–" : `${layer.rung} (${RUNG_NAMES[layer.rung]})`],
    ...objectives,
    ["canonical hash", layer.canonical_hash.slice(0, 16)],
    ["parent", layer.parent_id === null ? "–" : `#${layer.parent_id}`],
    ["finished", fmtTime(layer.finished_at)],
    ...(layer.rejection_reason ? [["rejection reason", layer.rejection_reason]] : []),
    ...(layer.error ? [["error", layer.error]] : []),
    ...(layer.formula.note ? [["note", layer.formula.note]] : []),
  ]);
  renderLayerMetrics(layer.metrics_by_architecture);
  renderRungs(layer.rungs);
  renderValidation(layer.validation, layer.mean_accuracy);
  renderLineage(layer.lineage, layer.lineage_truncated);
  renderEvaluations(layer.evaluations);
  $("layer-view").scrollIntoView({ behavior: "instant", block: "start" });
}

function renderLayerMetrics(byArchitecture) {
  const rows = [el("tr", {}, el("th", {}, "architecture"), el("th", {}, "phase"), el("th", {}, "accuracy"), el("th", {}, "loss"), el("th", {}, "steps"))];
  for (const [architecture, phases] of Object.entries(byArchitecture)) {
    for (const [phase, metrics] of Object.entries(phases)) {
      rows.push(
        el(
          "tr",
          {},
          el("td", {}, architecture),
          el("td", {}, phase),
          el("td", { class: "num" }, fmtNumber(metrics.accuracy)),
          el("td", { class: "num" }, typeof metrics.loss === "number" ? fmtNumber(metrics.loss) : metrics.loss ?? "–"),
          el("td", { class: "num" }, metrics.steps ?? "–"),
        ),
      );
    }
  }
  if (rows.length === 1) rows.push(el("tr", {}, el("td", { colspan: 5, class: "muted" }, "Not evaluated.")));
  $("layer-metrics").replaceChildren(...rows);
}

// One row per rung the layer has a result at: the proxies (one run per network, no spread) and the target
// task (mean ± std over the target seeds stored with every target network).
function renderRungs(rungs) {
  const header = el("tr", {}, ...["rung", "mean ± std", "per architecture", "seeds"].map((h) => el("th", {}, h)));
  const rows = rungs.map((r) =>
    el(
      "tr",
      { class: "rung-row" },
      el("td", {}, rungBadge(r.rung)),
      el("td", { class: "num" }, r.std === null ? fmtNumber(r.mean) : `${fmtNumber(r.mean)} ± ${fmtNumber(r.std)}`),
      el("td", {}, Object.entries(r.per_architecture).map(([a, v]) => `${a} ${fmtNumber(v)}`).join(", ")),
      el("td", { class: "num" }, r.seeds.length ? r.seeds.join(", ") : "–"),
    ),
  );
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 4, class: "muted" }, "No result at any rung yet.")));
  $("layer-rungs").replaceChildren(header, ...rows);
}

// The target task beside the proxies: validation mean ± std over seeds, the search's proxy accuracy
// (the API's mean over the layer's accuracy objectives).
function renderValidation(validation, proxyMean) {
  const rows = [el("tr", {}, el("th", {}, "architecture"), el("th", {}, "target accuracy (mean ± std)"), el("th", {}, "seeds"))];
  if (validation) {
    const spread = (v) => `${fmtNumber(v.mean)} ± ${fmtNumber(v.std)}`;
    for (const [architecture, v] of Object.entries(validation.per_architecture)) {
      rows.push(el("tr", {}, el("td", {}, architecture), el("td", { class: "num" }, spread(v)), el("td", { class: "num" }, validation.seeds.length)));
    }
    rows.push(el("tr", { class: "total" }, el("th", {}, "mean"), el("td", { class: "num" }, spread(validation)), el("td", { class: "num" }, validation.seeds.join(", "))));
  } else {
    rows.push(el("tr", {}, el("td", { colspan: 3, class: "muted" }, "Not validated: run evonorm-search validate SEARCH_ID.")));
  }
  rows.push(el("tr", {}, el("th", {}, "proxy mean"), el("td", { class: "num" }, proxyMean == null ? "–" : fmtNumber(proxyMean)), el("td", {}, "")));
  $("layer-validation").replaceChildren(...rows);
}

function renderLineage(lineage, truncated) {
  const items = lineage.map((a) =>
    el(
      "li",
      {},
      el("a", { onclick: () => openLayer(a.id) }, `#${a.id}`),
      ` (birth ${a.birth}, ${a.status}) `,
      el("code", {}, a.dsl.split("\n").slice(-1)[0]),
    ),
  );
  if (!items.length) items.push(el("li", { class: "muted" }, "No parent: a random or seed layer."));
  if (truncated) items.push(el("li", { class: "muted" }, "… older ancestors not shown"));
  $("layer-lineage").replaceChildren(...items);
}

function renderEvaluations(evaluations) {
  const rows = [
    el("tr", {}, ...["architecture", "phase", "attempt", "status", "seconds", "node"].map((h) => el("th", {}, h))),
    ...evaluations.map((e) =>
      el(
        "tr",
        {},
        el("td", {}, e.architecture),
        el("td", {}, e.phase),
        el("td", { class: "num" }, e.attempt),
        el("td", {}, e.status),
        el("td", { class: "num" }, fmtNumber(e.duration_seconds, 2)),
        el("td", {}, e.node ?? "–"),
      ),
    ),
  ];
  $("layer-evaluations").replaceChildren(...rows);
}

// Downloads go through fetch (so a key can travel in a header) and a blob link.
async function downloadExport(candidateId, file) {
  try {
    const response = await api(`${API}/candidates/${candidateId}/${file}`);
    const blob = await response.blob();
    const disposition = response.headers.get("Content-Disposition") || "";
    const match = disposition.match(/filename="([^"]+)"/);
    const link = el("a", { href: URL.createObjectURL(blob), download: match ? match[1] : file });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (error) {
    showMessage(`${file} of candidate ${candidateId}: ${error.message}`, true);
  }
}

// -- stop and resume ------------------------------------------------------------------------------

async function changeSearch(action) {
  try {
    const response = await api(`${API}/searches/${state.searchId}/${action}`, { method: "POST" });
    renderStatus(await response.json());
    showMessage(`search ${state.searchId}: ${action} requested`);
    if (action === "resume") followEvents(state.searchId);
    await loadSearches();
  } catch (error) {
    showMessage(`${action}: ${error.message}`, true);
  }
}

// -- start ----------------------------------------------------------------------------------------

function wire() {
  $("key-form").addEventListener("submit", (event) => event.preventDefault());
  const keyInput = $("api-key");
  keyInput.value = apiKey();
  keyInput.addEventListener("change", () => {
    sessionStorage.setItem(KEY_STORAGE, keyInput.value.trim());
    start();
  });
  $("more-searches").addEventListener("click", () => loadSearches(true));
  $("x-objective").addEventListener("change", () => loadFront().catch((e) => showMessage(e.message, true)));
  $("y-objective").addEventListener("change", () => loadFront().catch((e) => showMessage(e.message, true)));
  $("progress-objective").addEventListener("change", drawProgress);
  $("front-rung").addEventListener("change", () => {
    state.rung = $("front-rung").value;
    writeHash();
    loadFront().catch((e) => showMessage(e.message, true));
  });
  $("close-layer").addEventListener("click", closeLayer);
  $("download-module").addEventListener("click", () => downloadExport(state.layerId, "module.py"));
  $("download-kernels").addEventListener("click", () => downloadExport(state.layerId, "kernels.py"));
  $("stop-search").addEventListener("click", () => changeSearch("stop"));
  $("resume-search").addEventListener("click", () => changeSearch("resume"));
}

async function start() {
  try {
    await loadSearches();
  } catch (error) {
    showMessage(`cannot list searches: ${error.message}`, true);
    return;
  }
  const wanted = readHash();
  state.rung = wanted.front;
  $("front-rung").value = wanted.front;
  const first = $("search-list").firstElementChild;
  const searchId = wanted.search ?? (first ? Number(first.dataset.searchId) : null);
  if (searchId !== null) await selectSearch(searchId);
  if (wanted.layer !== null) await openLayer(wanted.layer);
}

document.addEventListener("DOMContentLoaded", () => {
  wire();
  start();
  setInterval(() => loadSearches().catch(() => {}), 15000);
});
