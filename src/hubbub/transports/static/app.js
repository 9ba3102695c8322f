// hubbub dashboard: a client of the hub's own doors. No framework, no build step.
//
// Every few seconds it reads /v1/stats and /v1/topics (rates are the change
// between two reads); the Messages panel follows topics over SSE (/v1/events)
// or the WebSocket (/v1/ws), resuming from its cursor when the hub closes it.
// Text from the hub goes into the page with textContent only, never as markup.
// The URL's fragment keeps what is followed: #follow=chat.room1&door=ws&from=start
// With authentication on, the page asks for a token (an admin one: /v1/stats
// needs it) and keeps it for the browser tab only (sessionStorage); it sends it
// as a bearer header, and as ?token= where browsers cannot set headers.
"use strict";

(() => {
  const MAX_TOPICS = 200;
  const MAX_MESSAGES = 100;
  const MAX_DATA = 600;
  const SPARK_POINTS = 60;
  const DOORS = [["ws", "WebSocket"], ["sse", "SSE"], ["longpoll", "long poll"], ["poll", "poll"]];

  const hash = new URLSearchParams(location.hash.slice(1));
  const TOKEN_KEY = "hubbub.token";
  let token = hash.get("token") || sessionStorage.getItem(TOKEN_KEY) || "";
  if (hash.has("token")) { // keep it out of the address bar and history
    sessionStorage.setItem(TOKEN_KEY, token);
    hash.delete("token");
    history.replaceState(null, "", "#" + hash);
  }
  const refreshMs = Math.max(250, Number(hash.get("refresh")) || 2000);

  const $ = (id) => document.getElementById(id);
  const url = (path) => new URL(path, document.baseURI);
  const numberFormat = new Intl.NumberFormat("en");

  // -- small helpers --------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null) continue;
      if (key === "class") node.className = value;
      else if (key === "title") node.title = value;
      else node.dataset[key] = value;
    }
    for (const child of children) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function td(value, cls) {
    return el("td", { class: cls }, value);
  }

  function num(n) {
    return n === undefined || n === null ? "\u2013" : numberFormat.format(n);
  }

  function perSecond(r) {
    if (r === null || r === undefined || !isFinite(r)) return "\u2013";
    if (r === 0) return "0";
    return r < 10 ? r.toFixed(1) : numberFormat.format(Math.round(r));
  }

  function bytes(n) {
    if (n === null || n === undefined) return "\u2013";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)) + " " + units[i];
  }

  function duration(seconds) {
    const s = Math.floor(seconds);
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }

  function clock(ms) {
    const d = new Date(ms);
    const pad = (n, w = 2) => String(n).padStart(w, "0");
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) +
      "." + pad(d.getMilliseconds(), 3);
  }

  function ago(ms) {
    return duration(Math.max(0, (Date.now() - ms) / 1000)) + " ago";
  }

  function bar(fraction) {
    const fill = el("span");
    fill.style.width = (Math.max(0, Math.min(1, fraction || 0)) * 100).toFixed(1) + "%";
    return el("div", { class: "bar" }, fill);
  }

  function sum(values) {
    return values.reduce((a, b) => a + b, 0);
  }

  function spark(svg, points) {
    const NS = "http://www.w3.org/2000/svg";
    svg.replaceChildren();
    if (points.length < 2) return;
    const max = Math.max(1, ...points);
    const step = 120 / (points.length - 1);
    const x0 = 0;
    const xy = points.map((p, i) => [x0 + i * step, 27 - (p / max) * 25]);
    const line = xy.map(([x, y]) => x.toFixed(1) + "," + y.toFixed(1)).join(" ");
    const area = document.createElementNS(NS, "polygon");
    area.setAttribute("points", x0.toFixed(1) + ",28 " + line + " 120,28");
    const stroke = document.createElementNS(NS, "polyline");
    stroke.setAttribute("points", line);
    svg.append(area, stroke);
  }

  function withToken(address) {
    if (token) address.searchParams.set("token", token);
    return address;
  }

  async function getJSON(path) {
    const headers = { accept: "application/json" };
    if (token) headers.authorization = "Bearer " + token;
    const r = await fetch(url(path), { cache: "no-store", headers });
    if (!r.ok) {
      const err = new Error(path + " answered " + r.status);
      err.status = r.status;
      throw err;
    }
    return r.json();
  }

  function setStatus(state, text) {
    const s = $("status");
    s.dataset.state = state;
    s.textContent = text;
  }

  // -- the periodic picture ---------------------------------------------------

  let previous = null; // {time, stats, offsets: Map(topic -> [epoch, last_offset])}
  const series = { published: [], delivered: [] };
  let topicRows = [];

  function push(list, value) {
    list.push(value);
    if (list.length > SPARK_POINTS) list.shift();
  }

  // Counters of the whole cluster: every node's summary, summed by the hub
  // (/v1/stats "cluster"; on one node, that node's own counters).
  function deliveries(stats) {
    return sum(Object.values(stats.cluster.deliveries));
  }

  async function refresh() {
    try {
      const [stats, topics] = await Promise.all([getJSON("v1/stats"), getJSON("v1/topics")]);
      render(stats, topics.topics, performance.now());
      setStatus(stats.node.draining ? "draining" : "live", stats.node.draining ? "draining" : "live");
    } catch (err) {
      const refused = err.status === 401 || err.status === 403;
      $("token-form").hidden = !refused;
      setStatus("offline", refused ? "needs an admin token" : "offline");
    } finally {
      setTimeout(refresh, refreshMs);
    }
  }

  function render(stats, topics, time) {
    const dt = previous ? (time - previous.time) / 1000 : null;
    const rate = (now, before) => (dt && before !== undefined ? Math.max(0, now - before) / dt : null);
    const node = stats.node;
    const cluster = stats.cluster;
    $("node").textContent = node.engine + " store \u00b7 hubbub " + node.version +
      " \u00b7 up " + duration(node.uptime) +
      (cluster.nodes > 1 ? " \u00b7 " + cluster.nodes + " nodes" : "");

    const published = rate(cluster.published, previous && previous.stats.cluster.published);
    const delivered = rate(deliveries(stats), previous && deliveries(previous.stats));
    if (published !== null) push(series.published, published);
    if (delivered !== null) push(series.delivered, delivered);
    $("published-rate").textContent = perSecond(published) + " /s";
    $("published-total").textContent = num(cluster.published);
    $("delivered-rate").textContent = perSecond(delivered) + " /s";
    $("delivered-total").textContent = num(deliveries(stats));
    spark($("published-spark"), series.published);
    spark($("delivered-spark"), series.delivered);

    const open = DOORS.slice(0, 3).map(([door, label]) => [label, cluster.open[door]]);
    $("connected").textContent = num(sum(open.map(([, n]) => n)));
    $("connected-doors").textContent = open.map(([label, n]) => label + " " + n).join(" \u00b7 ");

    const lat = stats.publish_latency;
    const before = previous && previous.stats.publish_latency;
    const count = before ? lat.count - before.count : lat.count;
    const total = before ? lat.sum - before.sum : lat.sum;
    $("latency").textContent = count > 0 ? (1000 * total / count).toFixed(2) + " ms" : "\u2013";

    $("topic-count").textContent = num(stats.topics !== undefined ? stats.topics : topics.length);
    $("subscriptions").textContent = num(cluster.subscriptions);
    $("store").textContent = stats.store.up ? "up" : "down";
    const errors = stats.store.errors;
    $("store-errors").textContent = "errors: append " + errors.append + " \u00b7 read " +
      errors.read + " \u00b7 feed " + errors.feed;

    renderTopics(topics, previous && previous.offsets, dt);
    renderDoors(stats, dt);
    renderGroups(stats.groups);
    renderJobs(stats.jobs);
    renderUploads(stats.uploads);

    const offsets = new Map(topics.map((t) => [t.topic, [t.epoch, t.last_offset]]));
    previous = { time, stats, offsets };
  }

  function renderTopics(topics, before, dt) {
    topicRows = topics.map((t) => {
      const was = before && before.get(t.topic);
      let r = null;
      if (dt) r = !was ? (t.last_offset > 0 && before ? t.last_offset / dt : 0)
        : was[0] === t.epoch ? Math.max(0, t.last_offset - was[1]) / dt : null;
      return { ...t, rate: r };
    });
    drawTopics();
  }

  function drawTopics() {
    const filter = $("topic-filter").value.trim().toLowerCase();
    const rows = topicRows
      .filter((t) => !filter || t.topic.toLowerCase().includes(filter))
      .sort((a, b) => (b.rate || 0) - (a.rate || 0) || a.topic.localeCompare(b.topic));
    const shown = rows.slice(0, MAX_TOPICS);
    const following = currentTopics();
    $("topics").tBodies[0].replaceChildren(...shown.map((t) => {
      const tr = el("tr", { topic: t.topic, class: following.includes(t.topic) ? "selected" : "" },
        td(t.topic, "name"), td(num(t.last_offset), "num"), td(num(t.count), "num"),
        td(perSecond(t.rate), "num" + (t.rate > 0 ? " rate-hot" : "")), td(num(t.subscribers), "num"));
      tr.title = "Follow " + t.topic;
      return tr;
    }));
    $("topics-empty").hidden = topicRows.length > 0;
    const more = $("topics-more");
    more.hidden = rows.length <= MAX_TOPICS;
    more.textContent = (rows.length - MAX_TOPICS) + " more topics: filter to narrow the list.";
  }

  function renderDoors(stats, dt) {
    const before = previous && previous.stats.doors;
    $("doors").tBodies[0].replaceChildren(...DOORS.map(([door, label]) => {
      const d = stats.doors[door];
      const r = dt && before ? Math.max(0, d.deliveries - before[door].deliveries) / dt : null;
      return el("tr", {},
        td(label), td(door === "poll" ? "\u2013" : num(d.open), "num"), td(perSecond(r), "num"),
        td(num(d.deliveries), "num"), td(door === "poll" ? "\u2013" : num(d.slow_consumers), "num"),
        td(num(sum(Object.values(d.gaps))), "num"));
    }));
  }

  function renderGroups(groups) {
    $("groups").tBodies[0].replaceChildren(...groups.map((g) => el("tr", { group: g.group },
      td(g.group, "name"), td(g.patterns.join(" "), "name"), td(num(g.pending), "num"),
      td(num(g.leased), "num"), td(num(g.delivered), "num"), td(num(g.acked), "num"),
      td(num(g.nacked), "num"), td(num(g.dead_lettered), "num"))));
    $("groups-empty").hidden = groups.length > 0;
  }

  function renderJobs(jobs) {
    $("job-states").replaceChildren(...Object.entries(jobs.states).sort().map(([state, n]) =>
      el("span", { class: "chip" }, state + " ", el("b", {}, num(n)))));
    $("jobs").tBodies[0].replaceChildren(...jobs.active.map((j) => el("tr", {},
      td(j.queue, "name"), el("td", {}, el("span", { class: "state " + j.state }, j.state)),
      el("td", {}, j.progress === null ? "\u2013" : bar(j.progress / 100)),
      td(j.message || ""), td(num(j.attempts), "num"), td(ago(j.updated), "num"))));
    $("jobs-empty").hidden = jobs.active.length > 0;
  }

  function renderUploads(uploads) {
    $("upload-bytes").textContent = bytes(uploads.bytes_received) + " received";
    $("uploads").tBodies[0].replaceChildren(...uploads.active.map((u) => el("tr", {},
      td(u.name || "(unnamed)", "name"),
      el("td", {}, u.length ? bar(u.offset / u.length) : "length not known yet"),
      td(bytes(u.offset) + (u.length ? " of " + bytes(u.length) : ""), "num"),
      td(ago(u.created), "num"))));
    $("uploads-empty").hidden = uploads.active.length > 0;
  }

  // -- following topics -------------------------------------------------------

  let follow = null; // {topics, close()}

  function currentTopics() {
    return follow ? follow.topics : [];
  }

  function setFollow(state, text) {
    const s = $("follow-status");
    s.dataset.state = state;
    s.textContent = text;
  }

  function addItem(li) {
    const list = $("messages");
    li.classList.add("fresh");
    list.prepend(li);
    while (list.children.length > MAX_MESSAGES) list.lastElementChild.remove();
  }

  function showData(m) {
    if (m.content_type && m.content_type !== "application/json") {
      const size = Math.floor((String(m.data).length * 3) / 4);
      return m.content_type + ", about " + bytes(size) + " (base64 on the wire)";
    }
    const text = JSON.stringify(m.data);
    return text.length > MAX_DATA ? text.slice(0, MAX_DATA) + "\u2026" : text;
  }

  function addMessage(m) {
    addItem(el("li", { offset: m.offset, topic: m.topic },
      el("span", { class: "m-topic" }, m.topic),
      el("span", { class: "m-offset" }, "#" + m.offset),
      el("span", { class: "m-time", title: new Date(m.time).toISOString() }, clock(m.time)),
      el("pre", { class: "m-data" }, showData(m))));
  }

  function addGap(g) {
    const li = el("li", { class: "gap" },
      el("span", { class: "m-topic" }, g.topic), el("span", { class: "m-offset" }, "gap"),
      el("span", { class: "m-time" }, ""),
      el("pre", { class: "m-data" },
        "messages " + g.from + " to " + g.to + " are lost (" + g.reason + ")"));
    addItem(li);
  }

  function followSSE(topics, from) {
    const query = new URLSearchParams();
    for (const t of topics) query.append("topic", t);
    if (from === "start") query.set("after", "start");
    const address = withToken(url("v1/events?" + query));
    const source = new EventSource(address);
    const what = topics.join(" ");
    source.addEventListener("ready", () => setFollow("live", "following " + what + " over SSE"));
    source.addEventListener("message", (e) => addMessage(JSON.parse(e.data)));
    source.addEventListener("gap", (e) => addGap(JSON.parse(e.data)));
    source.addEventListener("close", () => setFollow("idle", "the hub closed the stream; resuming"));
    source.addEventListener("error", async (e) => {
      if (e.data) { // the hub's own error event: the browser resumes from the last id
        setFollow("error", JSON.parse(e.data).message + "; resuming");
      } else if (source.readyState === EventSource.CONNECTING) {
        setFollow("error", "connection lost; reconnecting");
      } else { // refused: ask again to read the problem document
        try {
          const r = await fetch(address, { headers: { accept: "application/json" } });
          const problem = await r.json();
          setFollow("error", problem.detail || "refused (" + r.status + ")");
        } catch (err) {
          setFollow("error", "the stream was refused");
        }
      }
    });
    return { topics, close: () => source.close() };
  }

  function followWS(topics, from) {
    const address = withToken(url("v1/ws"));
    address.protocol = address.protocol === "https:" ? "wss:" : "ws:";
    let cursor = from === "start" ? "start" : null;
    let socket = null;
    let retry = null;
    let stopped = false;
    const what = topics.join(" ");
    const connect = () => {
      socket = new WebSocket(address, "hubbub.v1.json");
      socket.onopen = () => socket.send(JSON.stringify(
        { op: "sub", id: 1, topics, ...(cursor ? { after: cursor } : {}) }));
      socket.onmessage = (e) => {
        const frame = JSON.parse(e.data);
        if (frame.op === "ok" && frame.id === 1) {
          cursor = frame.cursor;
          setFollow("live", "following " + what + " over WebSocket");
        } else if (frame.op === "msg") {
          cursor = frame.cursor;
          addMessage(frame);
        } else if (frame.op === "gap") {
          addGap(frame);
        } else if (frame.op === "err") {
          stopped = true; // the hub refused the subscription: asking again would not help
          setFollow("error", "over WebSocket: refused: " + frame.message);
        } else if (frame.op === "close" && frame.subs && frame.subs["1"]) {
          cursor = frame.subs["1"];
        }
      };
      socket.onclose = (e) => {
        if (stopped) return;
        setFollow("error", "closed (" + e.code + (e.reason ? ": " + e.reason : "") + "); reconnecting");
        retry = setTimeout(connect, 2000);
      };
    };
    connect();
    return {
      topics,
      close: () => {
        stopped = true;
        clearTimeout(retry);
        if (socket) socket.close(1000);
      },
    };
  }

  function stopFollow() {
    if (follow) follow.close();
    follow = null;
  }

  function startFollow(text, door, from) {
    const topics = text.split(/[\s,]+/).filter(Boolean);
    stopFollow();
    $("messages").replaceChildren();
    if (!topics.length) {
      setFollow("idle", "pick a topic");
      history.replaceState(null, "", "#");
      drawTopics();
      return;
    }
    $("follow-topic").value = topics.join(" ");
    $("follow-door").value = door;
    $("follow-from").value = from;
    setFollow("idle", "connecting\u2026");
    follow = door === "ws" ? followWS(topics, from) : followSSE(topics, from);
    const state = new URLSearchParams({ follow: topics.join(" "), door, from });
    if (hash.has("refresh")) state.set("refresh", hash.get("refresh"));
    history.replaceState(null, "", "#" + state);
    drawTopics();
  }

  // -- wiring -----------------------------------------------------------------

  $("follow").addEventListener("submit", (e) => {
    e.preventDefault();
    startFollow($("follow-topic").value, $("follow-door").value, $("follow-from").value);
  });
  $("follow-stop").addEventListener("click", () => {
    stopFollow();
    setFollow("idle", "stopped");
    drawTopics();
  });
  $("topic-filter").addEventListener("input", drawTopics);
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    $("token-form").hidden = true;
    setStatus("connecting", "connecting");
    if (follow) startFollow(follow.topics.join(" "), $("follow-door").value, $("follow-from").value);
  });
  $("topics").tBodies[0].addEventListener("click", (e) => {
    const row = e.target.closest("tr");
    if (row && row.dataset.topic) {
      startFollow(row.dataset.topic, $("follow-door").value, $("follow-from").value);
    }
  });

  if (hash.get("follow")) {
    startFollow(hash.get("follow"), hash.get("door") === "ws" ? "ws" : "sse",
      hash.get("from") === "start" ? "start" : "end");
  }
  refresh();
})();
