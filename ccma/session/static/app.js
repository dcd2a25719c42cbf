// The labelling page: plain JavaScript, no build step, nothing fetched from elsewhere.
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token");
// one id per tab, kept across reloads of that tab: the images it holds stay its own
const client = sessionStorage.getItem("ccma-client") ||
  (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2)).replace(/[^A-Za-z0-9_-]/g, "");
sessionStorage.setItem("ccma-client", client);

let classes = [];
let cards = [];          // {row, el, answered}
let current = 0;
let shownRound = -1;
let lastLoad = 0;

const $ = (id) => document.getElementById(id);

function withToken(url) {
  return token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url;
}

async function api(path, body) {
  const opts = { headers: {} };
  if (token) opts.headers["X-CCMA-Token"] = token;
  if (body !== undefined) {
    opts.method = "POST";
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(path, opts);
  const data = await res.json().catch(() => ({}));
  return { ok: res.ok, status: res.status, data };
}

function say(text) {
  $("message").textContent = text || "";
}

function describe(answer) {
  if (!answer) return "";
  if (answer.kind === "skip") return "✓ skipped";
  if (answer.kind === "none") return "✓ not any of these";
  return "✓ " + classes[answer.label];
}

function button(text, cls, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  if (cls) b.className = cls;
  b.innerHTML = text;
  b.addEventListener("click", (e) => { e.stopPropagation(); onClick(); });
  return b;
}

function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function makeCard(item, index) {
  const el = document.createElement("div");
  el.className = "card";
  el.tabIndex = -1;
  el.dataset.row = item.row;
  const img = document.createElement("img");
  img.src = withToken("thumb/" + item.row);
  img.alt = "image " + item.row;
  img.loading = "lazy";
  el.appendChild(img);
  const choices = document.createElement("div");
  choices.className = "choices";
  item.teacher_set.slice(0, 9).forEach((c, k) => {
    choices.appendChild(button(`<small>${k + 1}</small>${escapeHtml(classes[c])}`, k === 0 ? "best" : "",
      () => send(index, "label", c)));
  });
  el.appendChild(choices);
  const other = document.createElement("div");
  other.className = "other";
  const input = document.createElement("input");
  input.setAttribute("list", "classlist");
  input.placeholder = "other class… (/)";
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      const name = input.value.trim().toLowerCase();
      const c = classes.findIndex((n) => n.toLowerCase() === name);
      if (c < 0) { say(`"${input.value}" is not a class of this session`); return; }
      input.value = "";
      input.blur();
      send(index, "label", c);
    } else if (e.key === "Escape") {
      input.blur();
    }
    e.stopPropagation();
  });
  other.appendChild(input);
  el.appendChild(other);
  const actions = document.createElement("div");
  actions.className = "actions";
  actions.appendChild(button("skip (s)", "skip", () => send(index, "skip", null)));
  actions.appendChild(button("not any of these (n)", "none", () => send(index, "none", null)));
  el.appendChild(actions);
  const answer = document.createElement("div");
  answer.className = "answer";
  answer.textContent = describe(item.answer);
  el.appendChild(answer);
  if (item.answer) el.classList.add("done");
  el.addEventListener("click", () => focusCard(index));
  return { row: item.row, el, answered: !!item.answer, input, answerEl: answer };
}

function focusCard(i) {
  if (!cards.length) return;
  current = Math.max(0, Math.min(cards.length - 1, i));
  cards.forEach((c, k) => c.el.classList.toggle("current", k === current));
  cards[current].el.focus({ preventScroll: true });
  cards[current].el.scrollIntoView({ block: "nearest" });
}

function nextOpen(from) {
  for (let k = 1; k <= cards.length; k++) {
    const i = (from + k) % cards.length;
    if (!cards[i].answered) return i;
  }
  return from;
}

async function send(index, kind, label) {
  const card = cards[index];
  const res = await api("api/answer", { client, row: card.row, kind, label });
  if (res.ok) {
    card.answered = true;
    card.el.classList.add("done");
    card.el.classList.remove("taken");
    card.answerEl.textContent = describe({ kind, label });
    say("");
    focusCard(nextOpen(index));
  } else {
    const detail = res.data.detail || `error ${res.status}`;
    if (res.status === 409) {
      card.answered = true;
      card.el.classList.add("taken");
      card.answerEl.textContent = detail;
    }
    say(detail);
  }
  refreshState();
}

async function loadBatch() {
  lastLoad = Date.now();
  const res = await api("api/batch?client=" + encodeURIComponent(client));
  if (!res.ok) { say(res.data.detail || "cannot load the batch"); return; }
  const grid = $("grid");
  grid.textContent = "";
  cards = res.data.items.map((item, i) => makeCard(item, i));
  cards.forEach((c) => grid.appendChild(c.el));
  shownRound = res.data.round;
  $("empty").hidden = cards.some((c) => !c.answered);
  const first = cards.findIndex((c) => !c.answered);
  focusCard(first < 0 ? 0 : first);
}

function drawChart(rounds) {
  const svg = $("chart");
  const W = 320, H = 120, pad = 18;
  const n = Math.max(rounds.length, 2);
  const x = (i) => pad + (i * (W - 2 * pad)) / (n - 1);
  const y = (v) => H - pad - v * (H - 2 * pad);
  let out = `<line x1="${pad}" y1="${y(0)}" x2="${W - pad}" y2="${y(0)}" stroke="#ccc"/>` +
    `<line x1="${pad}" y1="${y(1)}" x2="${W - pad}" y2="${y(1)}" stroke="#eee"/>` +
    `<text x="2" y="${y(1) + 4}" font-size="9">1</text><text x="2" y="${y(0) + 4}" font-size="9">0</text>`;
  for (const [key, cls] of [["heldout_accuracy", "acc"], ["overlap", "ov"], ["disagreement", "dis"]]) {
    const pts = rounds.map((r, i) => [i, r[key]]).filter(([, v]) => v !== null && v !== undefined);
    if (pts.length) {
      out += `<polyline class="line ${cls}" points="${pts.map(([i, v]) => `${x(i)},${y(v)}`).join(" ")}"/>`;
      out += pts.map(([i, v]) => `<circle cx="${x(i)}" cy="${y(v)}" r="2.5" class="line ${cls}"/>`).join("");
    }
  }
  rounds.forEach((r, i) => { out += `<text x="${x(i) - 3}" y="${H - 4}" font-size="9">${r.round}</text>`; });
  svg.innerHTML = out;
}

async function refreshState() {
  const res = await api("api/state");
  if (!res.ok) { $("status").textContent = res.data.detail || "no connection"; return; }
  const s = res.data;
  if (!classes.length) {
    classes = s.classes;
    $("classlist").innerHTML = classes.map((c) => `<option value="${escapeHtml(c)}">`).join("");
  }
  $("round").textContent = "round " + s.round;
  const status = $("status");
  status.className = "pill " + s.status;
  status.textContent = s.status === "busy" ? "⏳ " + s.message : s.status === "error" ? s.message : "ready";
  $("batch-bar").max = Math.max(s.batch_total, 1);
  $("batch-bar").value = s.batch_answered;
  $("batch-text").textContent = `${s.batch_answered} / ${s.batch_total}`;
  $("session-bar").max = s.n_images;
  $("session-bar").value = s.n_answered;
  $("session-text").textContent = `${s.n_answered} / ${s.n_images} images`;
  drawChart(s.rounds);
  const waiting = !cards.some((c) => !c.answered);
  if (s.round !== shownRound || (waiting && s.batch_answered < s.batch_total && Date.now() - lastLoad > 3000)) {
    await loadBatch();
  }
}

document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT" || e.ctrlKey || e.metaKey || e.altKey || !cards.length) return;
  const card = cards[current];
  if (e.key >= "1" && e.key <= "9") {
    const b = card.el.querySelectorAll(".choices button")[Number(e.key) - 1];
    if (b) b.click();
  } else if (e.key === "s") {
    card.el.querySelector("button.skip").click();
  } else if (e.key === "n") {
    card.el.querySelector("button.none").click();
  } else if (e.key === "ArrowRight" || e.key === "j") {
    focusCard(current + 1);
  } else if (e.key === "ArrowLeft" || e.key === "k") {
    focusCard(current - 1);
  } else if (e.key === "/") {
    card.input.focus();
  } else {
    return;
  }
  e.preventDefault();
});

refreshState();
setInterval(refreshState, 1000);
