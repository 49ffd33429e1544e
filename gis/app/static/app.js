// GIS-RAmap page: draw scribbles, run rounds, follow the guidance. Plain JS, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const view = {
  mode: null, info: null, status: null, colours: [],
  frame: 0, object: 1, stroke: null, drawn: [], busy: false, events: null, history: [],
};

function api(path) { return `/api/s/${view.info.sid}/${path}`; }

function say(text, isError = false) {
  $("message").textContent = text;
  $("message").classList.toggle("error", isError);
}

// JSON request; a refusal (4xx) is shown on the page and returned as null, never thrown.
async function call(url, body) {
  const options = { method: "POST", headers: { "Content-Type": "application/json" } };
  if (body !== undefined) options.body = JSON.stringify(body);
  let response;
  try { response = await fetch(url, options); } catch (err) { say(`the server is unreachable: ${err.message}`, true); return null; }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) { say(data.error || `request failed (${response.status})`, true); return null; }
  return data;
}

// ---------------------------------------------------------------- session
async function startSession() {
  const data = await call("/api/session");
  if (!data) return;
  if (data.finished) {
    $("app").hidden = true;
    $("finished").hidden = false;
    $("finished").textContent = data.message;
    return;
  }
  Object.assign(view, { mode: data.mode, info: data.info, colours: data.colours, frame: 0, object: 1, history: [], drawn: [] });
  const { info } = view;
  $("app").hidden = false;
  $("sequence").textContent = `${info.sequence} (${info.num_frames} frames, ${info.n_objects} object${info.n_objects > 1 ? "s" : ""}, ${info.guide})`;
  $("slider").max = info.num_frames - 1;
  $("strokes").width = info.width;
  $("strokes").height = info.height;
  $("finish").textContent = view.mode === "davis" ? "Satisfied" : "Export";
  $("gt-box").hidden = !info.has_gt;
  $("scores").hidden = !info.has_gt;
  $("scores").querySelector("tbody").innerHTML = "";
  $("candidates").innerHTML = "";
  $("guidance").textContent = "";
  $("export-link").textContent = "";
  buildObjectButtons();
  applyStatus(data.status);
  showFrame(0);
  say("Draw on the object: left button = selected object, right button (or the toggle) = background.");
}

function buildObjectButtons() {
  const box = $("objects");
  box.innerHTML = "";
  for (let id = 1; id <= view.info.n_objects; id++) {
    const button = document.createElement("button");
    button.textContent = id;
    button.style.background = view.colours[id];
    button.title = id <= 9 ? `object ${id} (key ${id})` : `object ${id}`;
    button.addEventListener("click", () => selectObject(id));
    box.appendChild(button);
  }
  selectObject(1);
}

function selectObject(id) {
  if (id < 1 || id > view.info.n_objects) return;
  view.object = id;
  [...$("objects").children].forEach((b, i) => b.classList.toggle("selected", i + 1 === id));
}

function applyStatus(status) {
  const old = view.status;
  view.status = status;
  $("round").textContent = status.running ? "running a round…" : `${status.round} round${status.round === 1 ? "" : "s"} done`;
  const { done, total } = status.progress;
  $("progress").max = Math.max(total, 1);
  $("progress").value = done;
  $("progress-text").textContent = total ? `${done} / ${total} frames` : "";
  $("run").disabled = status.running || status.strokes === 0;
  $("clear").disabled = status.running || status.strokes === 0;
  $("finish").disabled = status.running || status.round === 0;
  if (!old || old.version !== status.version) refreshMask();
}

// ---------------------------------------------------------------- frames
function showFrame(index) {
  const { info } = view;
  index = Math.max(0, Math.min(info.num_frames - 1, index));
  if (index !== view.frame && view.status.strokes > 0) clearStrokes();  // strokes belong to their frame
  view.frame = index;
  $("slider").value = index;
  $("frame-number").textContent = `${index} / ${info.num_frames - 1}`;
  $("frame").src = api(`frame/${index}.jpg`);
  if (info.has_gt) {
    $("gt-frame").src = api(`frame/${index}.jpg`);
    $("gt").src = api(`gt/${index}.png`);
  }
  refreshMask();
  redrawStrokes();
}

function refreshMask() {
  if (!view.info) return;
  $("mask").src = api(`mask/${view.frame}.png?v=${view.status ? view.status.version : 0}`);
}

// ---------------------------------------------------------------- strokes
function canvasPoint(event) {
  const box = $("strokes").getBoundingClientRect();
  const clamp = (v) => Math.max(0, Math.min(1, v));
  return [clamp((event.clientX - box.left) / box.width), clamp((event.clientY - box.top) / box.height)];
}

function redrawStrokes() {
  const canvas = $("strokes");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const all = view.stroke ? view.drawn.concat([view.stroke]) : view.drawn;
  ctx.lineWidth = Math.max(2, canvas.width / 160);
  ctx.lineCap = ctx.lineJoin = "round";
  for (const stroke of all) {
    ctx.strokeStyle = stroke.object_id === 0 ? "#000" : view.colours[stroke.object_id];
    ctx.beginPath();
    stroke.path.forEach(([x, y], i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, x * canvas.width, y * canvas.height));
    if (stroke.path.length === 1) ctx.lineTo(stroke.path[0][0] * canvas.width + 0.1, stroke.path[0][1] * canvas.height);
    ctx.stroke();
  }
}

function strokeStart(event) {
  if (view.status.running || view.busy || (event.button !== 0 && event.button !== 2)) return;
  event.preventDefault();
  $("strokes").setPointerCapture(event.pointerId);
  const background = event.button === 2 || $("background").checked;
  view.stroke = { object_id: background ? 0 : view.object, path: [canvasPoint(event)], started: performance.now() };
  redrawStrokes();
}

function strokeMove(event) {
  if (!view.stroke) return;
  view.stroke.path.push(canvasPoint(event));
  redrawStrokes();
}

async function strokeEnd(event) {
  const stroke = view.stroke;
  if (!stroke) return;
  view.stroke = null;
  stroke.path.push(canvasPoint(event));
  view.drawn.push(stroke);
  redrawStrokes();
  view.busy = true;
  say("segmenting the frame from the strokes…");
  const status = await call(api("stroke"), {
    frame: view.frame, object_id: stroke.object_id, path: stroke.path,
    duration: (performance.now() - stroke.started) / 1000,
  });
  view.busy = false;
  if (status) { applyStatus(status); say("Press Run to propagate, or add strokes."); }
  else { view.drawn.pop(); redrawStrokes(); }
}

async function clearStrokes() {
  view.drawn = [];
  redrawStrokes();
  const status = await call(api("clear"));
  if (status) applyStatus(status);
}

// ---------------------------------------------------------------- rounds
async function run() {
  if (view.status.running || view.status.strokes === 0) return;
  const started = await call(api("run"));
  if (!started) return;
  view.status.running = true;
  applyStatus(Object.assign({}, view.status, { running: true, progress: { done: 0, total: started.total } }));
  say("propagating…");
  const events = new EventSource(api("events"));
  view.events = events;
  events.addEventListener("progress", (e) => applyStatus(JSON.parse(e.data)));
  events.addEventListener("done", (e) => { events.close(); view.events = null; roundDone(JSON.parse(e.data)); });
  events.onerror = () => { events.close(); view.events = null; say("lost the progress stream; reload the page", true); };
}

function roundDone(status) {
  view.drawn = [];
  applyStatus(status);
  redrawStrokes();
  if (status.error) { say(status.error, true); return; }
  if (status.scores) {
    const s = status.scores;
    view.history.push(s);
    const row = document.createElement("tr");
    row.innerHTML = `<td>${status.round}</td><td>${s.mean_J.toFixed(3)}</td><td>${s.mean_F.toFixed(3)}</td><td>${s.mean_JF.toFixed(3)}</td>`;
    $("scores").querySelector("tbody").appendChild(row);
  }
  showGuidance(status);
  refreshMask();
}

function showGuidance(status) {
  const box = $("candidates");
  box.innerHTML = "";
  const rec = status.recommended;
  const done = view.mode === "davis" ? "press Satisfied" : "press Export";
  if (view.info.guide === "RS1" && rec) {
    showFrame(rec[0]);
    $("guidance").textContent = `Recommended frame ${rec[0]}: scribble on it (or pick another), or ${done}.`;
  } else if (view.info.guide === "RS4" && rec) {
    $("guidance").textContent = `Pick the frame to annotate next, or ${done}:`;
    rec.slice().sort((a, b) => a - b).forEach((frame, i) => {
      const button = document.createElement("button");
      button.className = "candidate";
      button.dataset.frame = frame;
      button.innerHTML = `<div class="thumb"><img src="${api(`frame/${frame}.jpg`)}" alt=""><img src="${api(`mask/${frame}.png?v=${status.version}`)}" alt=""></div>${"ABCD"[i]}: frame ${frame}`;
      button.addEventListener("click", () => pickFrame(frame));
      box.appendChild(button);
    });
  } else {
    $("guidance").textContent = `Find a frame to correct and scribble on it, or ${done}.`;
  }
  say(`Round ${status.round} done.`);
}

async function pickFrame(frame) {
  showFrame(frame);
  const status = await call(api("select"));
  if (status) applyStatus(status);
  $("candidates").innerHTML = "";
  $("guidance").textContent = `Annotating frame ${frame}.`;
}

async function finish() {
  if (view.status.running || view.status.round === 0) return;
  if (view.mode === "davis") {
    const result = await call(api("satisfied"));
    if (!result) return;
    say(`Saved ${view.info.sequence}: J ${avg(result.scores.J).toFixed(3)}, F ${avg(result.scores.F).toFixed(3)}, ` +
        `${result.times.total_time.toFixed(1)} s → ${result.csv}`);
    const saved = $("message").textContent;
    await startSession();
    say(saved);
  } else {
    say("exporting…");
    const result = await call(api("export"));
    if (!result) return;
    say(`Exported to ${result.folder}`);
    $("export-link").innerHTML = `<a href="${result.zip}" download>Download masks + overlay (zip)</a>`;
  }
}

function avg(values) { return values.reduce((a, b) => a + b, 0) / values.length; }

// ---------------------------------------------------------------- wiring
function wire() {
  const canvas = $("strokes");
  canvas.addEventListener("pointerdown", strokeStart);
  canvas.addEventListener("pointermove", strokeMove);
  canvas.addEventListener("pointerup", strokeEnd);
  canvas.addEventListener("pointercancel", strokeEnd);
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  $("slider").addEventListener("input", () => showFrame(Number($("slider").value)));
  $("prev").addEventListener("click", () => showFrame(view.frame - 1));
  $("next").addEventListener("click", () => showFrame(view.frame + 1));
  $("clear").addEventListener("click", clearStrokes);
  $("annotate").addEventListener("click", () => pickFrame(view.frame));
  $("run").addEventListener("click", run);
  $("finish").addEventListener("click", finish);
  $("opacity").addEventListener("input", () => { $("mask").style.opacity = $("opacity").value; });
  $("mask").style.opacity = $("opacity").value;
  document.addEventListener("keydown", (e) => {
    if (!view.info || e.target.tagName === "INPUT" && e.target.type !== "range" && e.target.type !== "checkbox") return;
    if (e.key === "ArrowLeft") showFrame(view.frame - 1);
    else if (e.key === "ArrowRight") showFrame(view.frame + 1);
    else if (/^[1-9]$/.test(e.key)) selectObject(Number(e.key));
    else if (e.key === "r" || e.key === "R") run();
    else if (e.key === "s" || e.key === "S") finish();
    else if (e.key === "c" || e.key === "C") clearStrokes();
    else if (e.key === "b" || e.key === "B") $("background").checked = !$("background").checked;
    else if (e.key === " ") pickFrame(view.frame);
    else return;
    e.preventDefault();
  });
  // A closed tab frees its session (and, in the evaluation, its sequence) on the server.
  window.addEventListener("pagehide", () => { if (view.info) navigator.sendBeacon(api("close")); });
}

wire();
startSession();
