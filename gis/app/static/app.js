// GIS-RAmap page: draw scribbles, run rounds, follow the guidance. Plain JS, no build step.
// The server holds the work (strokes, rounds, scores, clock); the page keeps only its session id, in
// sessionStorage, so that a reload gets the same session back.
"use strict";

const $ = (id) => document.getElementById(id);
const SID_KEY = "gis-app-session";
const view = {
  mode: null, info: null, status: null, colours: [],
  frame: 0, object: 1, stroke: null, events: null, heartbeat: null, player: null, retry: null,
  queue: Promise.resolve(), pending: [],  // strokes drawn but not yet answered by the server, in order
  candidates: [],
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
  clearTimeout(view.retry);
  const resume = sessionStorage.getItem(SID_KEY);
  if (!view.info) $("round").textContent = resume ? "loading your work…" : "loading…";
  const data = await call("/api/session", resume ? { resume } : {});
  if (!data) {  // e.g. every tab's place is taken: say why (the message area is hidden) and try again later
    showNothingLeft({ waiting: true, retry_after_s: 10, message: `${$("message").textContent} This page tries again by itself.` });
    return;
  }
  if (data.finished || data.waiting) { showNothingLeft(data); return; }
  sessionStorage.setItem(SID_KEY, data.info.sid);
  Object.assign(view, { mode: data.mode, info: data.info, colours: data.colours, frame: 0, object: 1, pending: [] });
  const { info } = view;
  $("app").hidden = false;
  $("finished").hidden = true;
  $("sequence").textContent = `${info.sequence} (${info.num_frames} frames, ${info.n_objects} object${info.n_objects > 1 ? "s" : ""}, ${info.guide})`;
  const full = info.work_width === info.width && info.work_height === info.height;
  $("work-size").textContent = full ? `full size ${info.width}×${info.height}`
    : `working size ${info.work_width}×${info.work_height} (masks upsampled to ${info.width}×${info.height})`;
  $("slider").max = info.num_frames - 1;
  $("stage").style.setProperty("--aspect", info.width / info.height);
  $("strokes").width = info.width;
  $("strokes").height = info.height;
  $("finish").textContent = view.mode === "davis" ? "Satisfied" : "Export";
  $("finish").title = view.mode === "davis" ? "end this sequence and write its CSV rows (S)" : "export masks and video (S)";
  $("gt-box").hidden = !info.has_gt;
  $("scores").hidden = !info.has_gt;
  $("export-link").textContent = "";
  $("export-video").hidden = true;
  buildObjectButtons();
  const status = data.status;
  view.status = null;
  applyStatus(status);
  fillScores(status.history);
  clearInterval(view.heartbeat);
  view.heartbeat = setInterval(() => navigator.sendBeacon(api("alive")), data.heartbeat_s * 1000);
  const start = status.stroke_frame !== null ? status.stroke_frame : 0;
  showFrame(start);
  if (status.running || status.restoring) { say("a round is running…"); follow(); return; }
  if (status.round > 0 && status.finding) showGuidance(status);
  else clearGuidance();
  if (status.round > 0 || status.strokes > 0) {
    say(`Your work is back: ${status.round} round${status.round === 1 ? "" : "s"}` +
        (status.strokes ? `, ${status.strokes} stroke(s) on frame ${status.stroke_frame} not run yet.` : "."));
  } else {
    say("Draw on the object: left button = selected object, right button (or the toggle) = background. ? lists the keys.");
  }
}

function showNothingLeft(data) {
  // The evaluation is over (or every sequence left is open in another tab): no sequence header any more.
  clearInterval(view.heartbeat);
  stopPlaying();
  view.info = null;
  $("app").hidden = true;
  $("finished").hidden = false;
  $("sequence").textContent = data.finished ? "evaluation finished" : "waiting for a free sequence";
  $("round").textContent = "";
  $("work-size").textContent = "";
  $("finished-message").textContent = data.message;
  const rows = data.results || [];
  $("summary").hidden = rows.length === 0;
  const body = $("summary").querySelector("tbody");
  body.innerHTML = "";
  for (const r of rows) {
    const row = document.createElement("tr");
    [r.sequence, r.objects, r.rounds, r.J.toFixed(3), r.F.toFixed(3), r.JF.toFixed(3), r.total_time.toFixed(1)]
      .forEach((v) => { const cell = document.createElement("td"); cell.textContent = v; row.appendChild(cell); });
    body.appendChild(row);
  }
  if (rows.length) {
    const mean = (k) => (rows.reduce((a, r) => a + r[k], 0) / rows.length).toFixed(3);
    const row = document.createElement("tr");
    row.innerHTML = `<td>mean</td><td></td><td></td><td>${mean("J")}</td><td>${mean("F")}</td><td>${mean("JF")}</td><td></td>`;
    body.appendChild(row);
  }
  if (data.waiting) view.retry = setTimeout(startSession, data.retry_after_s * 1000);
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
  $("background").checked = false;
  [...$("objects").children].forEach((b, i) => b.classList.toggle("selected", i + 1 === id));
}

function busy() { return !view.status || view.status.running || view.status.restoring; }

function applyStatus(status) {
  const old = view.status;
  view.status = status;
  $("round").textContent = status.running ? "running a round…" : `${status.round} round${status.round === 1 ? "" : "s"} done`;
  const { done, total } = status.progress;
  $("progress").max = Math.max(total, 1);
  $("progress").value = done;
  $("progress-text").textContent = total ? `${done} / ${total} frames` : "";
  const strokes = status.strokes + view.pending.length;
  $("run").disabled = busy() || strokes === 0;
  $("clear").disabled = busy() || status.strokes === 0;
  $("undo").disabled = busy() || !status.undo;
  $("redo").disabled = busy() || status.redo === 0;
  $("finish").disabled = busy() || status.round === 0;
  $("restart").disabled = busy() || (status.round === 0 && status.strokes === 0);
  if (!old || old.version !== status.version) refreshMask();
  redrawStrokes();
}

// ---------------------------------------------------------------- frames
function showFrame(index) {
  const { info } = view;
  index = Math.max(0, Math.min(info.num_frames - 1, index));
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
  const s = view.status;
  if (s && s.strokes > 0 && s.stroke_frame !== index && !view.player) {
    // Strokes are kept on their own frame (never dropped by moving): say so instead of "Press Run".
    say(`${s.strokes} stroke(s) on frame ${s.stroke_frame} are not run yet and are kept: Run uses them. ` +
        `Drawing on this frame asks to drop them first.`);
  }
}

function refreshMask() {
  if (!view.info) return;
  const v = view.status ? view.status.version : 0;
  $("mask").src = api(`mask/${view.frame}.png?v=${v}`);
  $("outline").hidden = !$("contours").checked;
  if ($("contours").checked) $("outline").src = api(`mask/${view.frame}.png?outline=1&v=${v}`);
}

function stopPlaying() {
  clearInterval(view.player);
  view.player = null;
  $("play").textContent = "Play";
}

function togglePlay() {
  if (view.player) { stopPlaying(); return; }
  $("play").textContent = "Pause";
  view.player = setInterval(() => showFrame((view.frame + 1) % view.info.num_frames), 1000 / view.info.fps);
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
  if (!view.status) return;
  const all = (view.status.stroke_frame === view.frame ? view.status.paths : [])
    .concat(view.pending.filter((s) => s.frame === view.frame), view.stroke ? [view.stroke] : []);
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
  if (busy() || (event.button !== 0 && event.button !== 2)) return;
  event.preventDefault();
  stopPlaying();
  $("strokes").setPointerCapture(event.pointerId);
  const background = event.button === 2 || $("background").checked;
  view.stroke = { frame: view.frame, object_id: background ? 0 : view.object, path: [canvasPoint(event)], started: performance.now() };
  redrawStrokes();
}

function strokeMove(event) {
  if (!view.stroke) return;
  view.stroke.path.push(canvasPoint(event));
  redrawStrokes();
}

function strokeEnd(event) {
  const stroke = view.stroke;
  if (!stroke) return;
  view.stroke = null;
  stroke.path.push(canvasPoint(event));
  stroke.duration = (performance.now() - stroke.started) / 1000;
  const s = view.status;
  const elsewhere = s.strokes > 0 ? s.stroke_frame : (view.pending.length ? view.pending[0].frame : null);
  if (elsewhere !== null && elsewhere !== stroke.frame) {
    if (!confirm(`Frame ${elsewhere} has strokes that were not run. Drop them and draw on frame ${stroke.frame}?`)) {
      redrawStrokes();
      say(`Kept the strokes on frame ${elsewhere}; go back there and press Run.`);
      return;
    }
    stroke.replace = true;
  }
  // A stroke drawn while an earlier one is still being segmented waits for it, in order: none is dropped.
  view.pending.push(stroke);
  applyStatus(view.status);
  view.queue = view.queue.then(() => sendStroke(stroke));
}

async function sendStroke(stroke) {
  say("segmenting the frame from the strokes…");
  const body = { frame: stroke.frame, object_id: stroke.object_id, path: stroke.path, duration: stroke.duration };
  if (stroke.replace) body.replace = true;
  const status = await call(api("stroke"), body);
  view.pending.splice(view.pending.indexOf(stroke), 1);
  if (status) {
    applyStatus(status);
    if (!view.pending.length) say(`Press Run to propagate (${status.strokes} stroke${status.strokes === 1 ? "" : "s"} on frame ${status.stroke_frame}), or add strokes.`);
  } else {
    applyStatus(view.status);
  }
}

async function strokeCommand(name) {
  await view.queue;
  if (busy()) return;
  const status = await call(api(name));
  if (status) { applyStatus(status); say(name === "clear" ? "Strokes cleared (Undo brings them back)." : `${name}: ${status.strokes} stroke(s) to run.`); }
}

// ---------------------------------------------------------------- rounds
async function run() {
  await view.queue;  // strokes still on their way belong to this round
  if (busy() || view.status.strokes === 0) return;
  stopPlaying();
  const started = await call(api("run"));
  if (!started) return;
  applyStatus(Object.assign({}, view.status, { running: true, progress: { done: 0, total: started.total } }));
  say("propagating…");
  clearGuidance();
  follow();
}

// Follow a running round (or a restore) through the progress stream to its end.
function follow() {
  if (view.events) view.events.close();
  const events = new EventSource(api("events"));
  view.events = events;
  events.addEventListener("progress", (e) => applyStatus(JSON.parse(e.data)));
  events.addEventListener("done", (e) => { events.close(); view.events = null; roundDone(JSON.parse(e.data)); });
  events.onerror = () => { events.close(); view.events = null; say("lost the progress stream; reload the page (the work is kept)", true); };
}

function fillScores(history) {
  const body = $("scores").querySelector("tbody");
  body.innerHTML = "";
  for (const h of history) {
    const row = document.createElement("tr");
    row.innerHTML = `<td>${h.round}</td><td>${h.J.toFixed(3)}</td><td>${h.F.toFixed(3)}</td><td>${h.JF.toFixed(3)}</td>`;
    body.appendChild(row);
  }
}

function roundDone(status) {
  applyStatus(status);
  fillScores(status.history);
  if (status.error) { say(status.error, true); return; }
  if (status.round > 0) showGuidance(status);
  refreshMask();
}

function clearGuidance() {
  view.candidates = [];
  $("candidates").innerHTML = "";
  $("candidates-gt").innerHTML = "";
  $("candidate-box").hidden = true;
  $("guidance").textContent = "";
}

function thumb(frame, overlay) {
  return `<div class="thumb"><img src="${api(`frame/${frame}.jpg`)}" alt=""><img src="${overlay}" alt=""></div>`;
}

function showGuidance(status) {
  clearGuidance();
  const rec = status.recommended;
  const done = view.mode === "davis" ? "press Satisfied" : "press Export";
  if (view.info.guide === "RS1" && rec) {
    showFrame(rec[0]);
    $("guidance").textContent = `Recommended frame ${rec[0]}: scribble on it (or pick another), or ${done}.`;
  } else if (view.info.guide === "RS4" && rec) {
    // The reference's mosaic: the 4 candidates with their masks, and beside it their ground truth.
    $("guidance").textContent = `Pick the frame to annotate next (A–D), or ${done}:`;
    view.candidates = rec.slice().sort((a, b) => a - b);
    view.candidates.forEach((frame, i) => {
      const button = document.createElement("button");
      button.className = "candidate";
      button.dataset.frame = frame;
      button.innerHTML = `${thumb(frame, api(`mask/${frame}.png?v=${status.version}`))}${"ABCD"[i]}: frame ${frame}`;
      button.addEventListener("click", () => pickFrame(frame));
      $("candidates").appendChild(button);
      if (view.info.has_gt) {
        const figure = document.createElement("figure");
        figure.innerHTML = `${thumb(frame, api(`gt/${frame}.png`))}<figcaption>${"ABCD"[i]}: frame ${frame}</figcaption>`;
        $("candidates-gt").appendChild(figure);
      }
    });
    $("candidate-box").hidden = false;
    $("candidates-gt-box").hidden = !view.info.has_gt;
  } else {
    $("guidance").textContent = `Find a frame to correct and scribble on it, or ${done}.`;
  }
  say(`Round ${status.round} done.`);
}

async function pickFrame(frame) {
  stopPlaying();
  showFrame(frame);
  const status = await call(api("select"));
  if (status) applyStatus(status);
  clearGuidance();
  $("guidance").textContent = `Annotating frame ${frame}.`;
}

async function finish() {
  await view.queue;
  if (busy() || view.status.round === 0) return;
  if (view.mode === "davis") {
    if (!confirm(`Satisfied with ${view.info.sequence}? Its CSV rows are written and the next sequence loads; this cannot be undone.`)) return;
    const result = await call(api("satisfied"));
    if (!result) return;
    const saved = `Saved ${view.info.sequence}: J ${avg(result.scores.J).toFixed(3)}, F ${avg(result.scores.F).toFixed(3)}, ` +
      `${result.times.total_time.toFixed(1)} s → ${result.csv}`;
    sessionStorage.removeItem(SID_KEY);
    await startSession();
    say(saved);
    if (!$("finished").hidden) $("finished-message").textContent = `${saved}. ${$("finished-message").textContent}`;
  } else {
    say("exporting…");
    const result = await call(api("export"));
    if (!result) return;
    say(`Exported to ${result.folder} (${result.codec === "h264" ? "H.264" : "MPEG-4 Part 2: install imageio-ffmpeg for H.264"}, ${result.fps} fps)`);
    $("export-link").innerHTML = `<a href="${result.zip}" download>Download masks + overlay (zip)</a>`;
    $("export-video").src = `${result.video}?t=${Date.now()}`;
    $("export-video").hidden = false;
  }
}

async function restart() {
  await view.queue;
  if (busy()) return;
  if (!confirm("Start this video over? Its rounds, strokes and clock are dropped.")) return;
  stopPlaying();  // starting over shows the first frame, which playback would move on from
  const status = await call(api("restart"));
  if (!status) return;
  applyStatus(status);
  fillScores([]);
  clearGuidance();
  showFrame(0);
  say("Started over.");
}

function avg(values) { return values.reduce((a, b) => a + b, 0) / values.length; }

function toggleHelp(show) { $("help").hidden = show === undefined ? !$("help").hidden : !show; }

// ---------------------------------------------------------------- wiring
function onKey(e) {
  if (e.target.tagName === "INPUT" && e.target.type !== "range" && e.target.type !== "checkbox") return;
  const key = e.key.toLowerCase();
  if (e.ctrlKey || e.metaKey || e.altKey) {
    // Only undo and redo use a modifier; every other combination is the browser's (Ctrl+S, Ctrl+R, Ctrl+C...).
    if (!view.info || e.altKey) return;
    if (key === "z" && !e.shiftKey) strokeCommand("undo");
    else if ((key === "z" && e.shiftKey) || (key === "y" && !e.shiftKey)) strokeCommand("redo");
    else return;
    e.preventDefault();
    return;
  }
  if (e.key === "?") { toggleHelp(); e.preventDefault(); return; }
  if (e.key === "Escape") { toggleHelp(false); return; }
  if (!view.info) return;
  if (e.key === "ArrowLeft") { stopPlaying(); showFrame(view.frame - 1); }
  else if (e.key === "ArrowRight") { stopPlaying(); showFrame(view.frame + 1); }
  else if (/^[1-9]$/.test(e.key)) selectObject(Number(e.key));
  else if (e.key === "0") $("background").checked = !$("background").checked;
  else if (key === "p") togglePlay();
  else if (key === "r") run();
  else if (key === "s") finish();
  else if (key === "x") strokeCommand("clear");
  else if (key === "o") { $("contours").checked = !$("contours").checked; refreshMask(); }
  else if ("abcd".includes(key) && key.length === 1 && view.candidates.length > "abcd".indexOf(key)) pickFrame(view.candidates["abcd".indexOf(key)]);
  else if (e.key === " ") pickFrame(view.frame);
  else return;
  e.preventDefault();
}

function wire() {
  const canvas = $("strokes");
  canvas.addEventListener("pointerdown", strokeStart);
  canvas.addEventListener("pointermove", strokeMove);
  canvas.addEventListener("pointerup", strokeEnd);
  canvas.addEventListener("pointercancel", strokeEnd);
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  $("slider").addEventListener("input", () => { stopPlaying(); showFrame(Number($("slider").value)); });
  $("prev").addEventListener("click", () => { stopPlaying(); showFrame(view.frame - 1); });
  $("next").addEventListener("click", () => { stopPlaying(); showFrame(view.frame + 1); });
  $("play").addEventListener("click", togglePlay);
  $("clear").addEventListener("click", () => strokeCommand("clear"));
  $("undo").addEventListener("click", () => strokeCommand("undo"));
  $("redo").addEventListener("click", () => strokeCommand("redo"));
  $("annotate").addEventListener("click", () => pickFrame(view.frame));
  $("run").addEventListener("click", run);
  $("finish").addEventListener("click", finish);
  $("restart").addEventListener("click", restart);
  $("help-button").addEventListener("click", () => toggleHelp());
  $("help-close").addEventListener("click", () => toggleHelp(false));
  $("opacity").addEventListener("input", () => { $("mask").style.opacity = $("opacity").value; });
  $("contours").addEventListener("change", refreshMask);
  $("mask").style.opacity = $("opacity").value;
  document.addEventListener("keydown", onKey);
  // Leaving (or reloading) frees the sequence at once; the work stays on the server for this tab or the next.
  window.addEventListener("pagehide", () => { if (view.info) navigator.sendBeacon(api("close")); });
}

wire();
startSession();
