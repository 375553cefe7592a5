/* pm-polars dashboard: reads /api/stream (SSE over fetch, so a bearer token can be sent),
 * keeps one table row per portfolio and updates only the cells whose value changed.
 * Test hooks: one element per portfolio with data-portfolio-id; cells data-field/data-value
 * (full-precision number, "" for null); data-field="aum_total" in the header. */
"use strict";
(function () {
  var TODAY = [["m2m", "m2m"], ["day_net_pnl", "day net"], ["day_pnl", "day P&L"]];  // first when present
  var BASE = [["cash", "cash"], ["total_realized_pnl", "realized"],
    ["total_unrealized_pnl", "unrealized"], ["total_pnl", "total P&L"], ["net_pnl", "net P&L"],
    ["equity", "equity"], ["gross_exposure", "gross exp"], ["open_positions", "open"]];
  var TEXT = [["portfolio_id", "portfolio"], ["source", "source"]];
  var SIGNED = {day_pnl: 1, m2m: 1, day_net_pnl: 1, total_realized_pnl: 1, total_unrealized_pnl: 1, total_pnl: 1,
    net_pnl: 1};
  var CHART_POINTS = 3600, CHART_EVERY_MS = 1000;
  var money = new Intl.NumberFormat("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2});
  var count = new Intl.NumberFormat("en-US", {maximumFractionDigits: 0});

  var state = {
    docs: {}, rows: {}, order: [], columns: BASE.slice(), today: false,
    sortKey: "portfolio_id", sortAsc: true, selected: null, pending: {}, pendingAum: undefined,
    frame: 0, lastEventAt: 0, heartbeatMs: 5000, lastId: null, since: null, token: null,
    history: {}, lastSample: 0, resortDue: false, aum: null
  };
  var $ = function (id) { return document.getElementById(id); };
  var chart = new window.LineChart($("chart"));
  var aumCell = {td: document.querySelector('[data-field="aum_total"]'), text: null, value: null,
    flip: false, base: ""};

  // ------------------------------------------------------------------ formatting
  function fmt(field, v) {
    if (v === null || v === undefined || typeof v !== "number" || !isFinite(v)) return "—";
    return field === "open_positions" ? count.format(v) : money.format(v);
  }
  // A cell is {td, value, flip}; the value is compared in JS (no DOM reads). A flash is a
  // CSS animation restarted by alternating two class names (no reflow, no animation objects).
  function setCell(cell, field, v, flash) {
    var text = v === null || v === undefined ? "" : String(v);
    if (cell.text === text) return;
    var old = cell.value;
    cell.text = text;
    cell.value = v;
    cell.td.setAttribute("data-value", text);
    cell.td.textContent = fmt(field, v);
    var cls = cell.base + (SIGNED[field] ? (v < 0 ? " neg" : v > 0 ? " pos" : "") : "");
    if (flash && typeof old === "number" && typeof v === "number") {
      cell.flip = !cell.flip;
      cls += (v > old ? " up" : " down") + (cell.flip ? "1" : "2");
    }
    cell.td.className = cls;
  }

  // ------------------------------------------------------------------ table
  function renderHead() {
    var tr = $("head");
    tr.textContent = "";
    $("book").style.setProperty("--cols", "250px 76px repeat(" + state.columns.length + ", 128px)");
    TEXT.concat(state.columns).forEach(function (c) {
      var th = document.createElement("div");
      th.setAttribute("role", "columnheader");
      th.textContent = c[1];
      th.setAttribute("data-sort", c[0]);
      th.className = TEXT.some(function (t) { return t[0] === c[0]; }) ? "cell text" : "cell";
      if (c[0] === state.sortKey) th.className += " sorted" + (state.sortAsc ? " asc" : "");
      tr.appendChild(th);
    });
  }
  function buildRow(doc) {
    var tr = document.createElement("div");
    tr.setAttribute("data-portfolio-id", doc.portfolio_id);
    tr.setAttribute("role", "row");
    tr.className = doc.strategy_id === "Overall" ? "row overall" : "row";
    var cells = {};
    TEXT.forEach(function (c) {
      var td = document.createElement("div");
      td.className = "cell text";
      td.setAttribute("data-field", c[0]);
      td.textContent = doc[c[0]];
      tr.appendChild(td);
    });
    state.columns.forEach(function (c) {
      var td = document.createElement("div");
      td.setAttribute("data-field", c[0]);
      tr.appendChild(td);
      cells[c[0]] = {td: td, text: null, value: null, flip: false, base: "cell"};
    });
    state.rows[doc.portfolio_id] = {tr: tr, cells: cells};
    return tr;
  }
  function rebuildTable() {
    var body = $("rows");
    body.textContent = "";
    state.rows = {};
    var frag = document.createDocumentFragment();
    state.order = Object.keys(state.docs);
    state.order.forEach(function (pid) { frag.appendChild(buildRow(state.docs[pid])); });
    body.appendChild(frag);
    state.order.forEach(function (pid) { fillRow(state.docs[pid], false); });
    sortRows();
  }
  function fillRow(doc, flash) {
    var cells = state.rows[doc.portfolio_id].cells, cols = state.columns;
    for (var i = 0; i < cols.length; i++) setCell(cells[cols[i][0]], cols[i][0], doc[cols[i][0]], flash);
  }
  function compare(a, b) {
    var da = state.docs[a], db = state.docs[b];
    var oa = da.strategy_id === "Overall", ob = db.strategy_id === "Overall";
    if (oa !== ob) return oa ? -1 : 1;  // Overall rows stay on top
    var va = da[state.sortKey], vb = db[state.sortKey], r;
    if (typeof va === "number" || typeof vb === "number") r = (va || 0) - (vb || 0);
    else r = String(va).localeCompare(String(vb));
    if (r === 0) r = a < b ? -1 : a > b ? 1 : 0;
    return state.sortAsc ? r : -r;
  }
  function sortRows() {
    state.order.sort(compare);
    var body = $("rows"), frag = document.createDocumentFragment();
    state.order.forEach(function (pid) { frag.appendChild(state.rows[pid].tr); });
    body.appendChild(frag);
    $("empty").hidden = state.order.length > 0;
    state.resortDue = false;
  }
  function detectToday(docs) {
    if (state.today) return false;
    var has = docs.some(function (d) { return "day_pnl" in d || "m2m" in d; });
    if (!has) return false;
    state.today = true;
    state.columns = TODAY.filter(function (c) { return docs.some(function (d) { return c[0] in d; }); })
      .concat(BASE);
    renderHead();
    return true;
  }

  // ------------------------------------------------------------------ header, positions, chart
  function renderAum(aum) {
    state.aum = aum;
    setCell(aumCell, "aum_total", aum ? aum.total : null, true);
    var parts = [];
    if (aum && aum.by_source) Object.keys(aum.by_source).sort().forEach(function (s) {
      parts.push(s + " " + fmt(s, aum.by_source[s]));
    });
    $("aum-sources").textContent = parts.join(" · ");
  }
  function renderDay() {
    var days = {};
    Object.keys(state.docs).forEach(function (p) {
      if (state.docs[p].trading_day) days[state.docs[p].trading_day] = 1;
    });
    var list = Object.keys(days);
    $("day").textContent = list.length ? "trading day " + list.join(", ") : "";
  }
  function renderPositions() {
    var pid = state.selected, doc = pid && state.docs[pid];
    $("positions").hidden = !doc;
    document.body.classList.toggle("with-positions", !!doc);
    if (!doc) return;
    $("pos-title").textContent = pid + " · " + doc.open_positions + " open";
    var body = $("pos-rows"), frag = document.createDocumentFragment();
    Object.keys(doc.positions || {}).map(Number).sort(function (a, b) { return a - b; })
      .forEach(function (tok) {
        var p = doc.positions[String(tok)], tr = document.createElement("tr");
        [String(tok), p.quantity, p.average_price, p.last_price, p.realized_pnl, p.unrealized_pnl,
          p.fees, p.market_value].forEach(function (v, i) {
          var td = document.createElement("td");
          td.textContent = i === 0 ? v : i === 1 ? count.format(v) : fmt("", v);
          if (i === 0) td.className = "text";
          tr.appendChild(td);
        });
        frag.appendChild(tr);
      });
    body.textContent = "";
    body.appendChild(frag);
  }
  function sample(now) {
    if (now - state.lastSample < CHART_EVERY_MS) return;
    state.lastSample = now;
    var total = 0, any = false;
    Object.keys(state.docs).forEach(function (pid) {
      var d = state.docs[pid], h = state.history[pid] || (state.history[pid] = []);
      if (typeof d.net_pnl !== "number") return;
      h.push([now, d.net_pnl]);
      if (h.length > CHART_POINTS) h.shift();
      if (d.strategy_id === "Overall") { total += d.net_pnl; any = true; }
    });
    if (any) {
      var t = state.history.__total || (state.history.__total = []);
      t.push([now, total]);
      if (t.length > CHART_POINTS) t.shift();
    }
    drawChart();
  }
  var COLORS = ["#d29922", "#a371f7", "#39c5cf", "#db61a2"];
  function drawChart() {
    var series = [{label: "total net P&L", color: "#58a6ff", width: 2.5,
      points: state.history.__total || []}];
    Object.keys(state.docs).filter(function (p) { return state.docs[p].strategy_id === "Overall"; })
      .sort().forEach(function (pid, i) {
        series.push({label: pid, color: COLORS[i % COLORS.length], width: 1.2,
          points: state.history[pid] || []});
      });
    if (state.selected && state.docs[state.selected] &&
        state.docs[state.selected].strategy_id !== "Overall") {
      series.push({label: state.selected, color: "#e6edf3", width: 1.2, dash: [4, 3],
        points: state.history[state.selected] || []});
    }
    chart.draw(series);
    $("legend").innerHTML = "";
    series.forEach(function (s) {
      var span = document.createElement("span");
      span.style.color = s.color;
      span.textContent = "— " + s.label;
      $("legend").appendChild(span);
    });
  }

  // ------------------------------------------------------------------ applying events
  var stats = window.__pmStats = {flushes: 0, docs: 0, flushMs: []};  // read by bench/serve.py
  function flush() {
    var started = performance.now();
    state.frame = 0;
    var pids = Object.keys(state.pending), docs = pids.map(function (p) { return state.pending[p]; });
    state.pending = {};
    var rebuilt = detectToday(docs), added = false;
    docs.forEach(function (doc) {
      state.docs[doc.portfolio_id] = doc;
      if (!state.rows[doc.portfolio_id]) {
        $("rows").appendChild(buildRow(doc));
        state.order.push(doc.portfolio_id);
        added = true;
        fillRow(doc, false);
      } else if (!rebuilt) {
        fillRow(doc, true);
      }
    });
    if (rebuilt) rebuildTable();
    else if (added || state.resortDue) sortRows();
    else if (state.sortKey !== "portfolio_id" && docs.length) state.resortDue = true;
    if (state.pendingAum !== undefined) { renderAum(state.pendingAum); state.pendingAum = undefined; }
    if (state.selected && pids.indexOf(state.selected) >= 0) renderPositions();
    renderDay();
    sample(Date.now());
    stats.flushes += 1;
    stats.docs += docs.length;
    stats.flushMs.push(performance.now() - started);
    if (stats.flushMs.length > 2000) stats.flushMs.shift();
  }
  function schedule() { if (!state.frame) state.frame = requestAnimationFrame(flush); }
  function onSnapshot(data) {
    state.heartbeatMs = (data.heartbeat_s || 5) * 1000;
    var fresh = {};
    data.portfolios.forEach(function (d) { fresh[d.portfolio_id] = d; });
    var changedSet = Object.keys(fresh).length !== Object.keys(state.docs).length ||
      Object.keys(state.docs).some(function (p) { return !(p in fresh); });
    if (changedSet) {  // portfolios vanished (new run) or first load: rebuild the table
      state.pending = {};  // older than the snapshot
      state.docs = fresh;
      detectToday(data.portfolios);
      rebuildTable();
    } else {
      data.portfolios.forEach(function (d) { state.pending[d.portfolio_id] = d; });
    }
    state.pendingAum = data.aum;
    schedule();
    if (state.selected) renderPositions();
  }
  function onUpdate(data) {
    data.portfolios.forEach(function (d) { state.pending[d.portfolio_id] = d; });
    state.pendingAum = data.aum;
    schedule();
  }

  // ------------------------------------------------------------------ connection state
  function setConn(kind, text) {
    var el = $("conn");
    el.setAttribute("data-state", kind);
    el.textContent = text;
    document.body.classList.toggle("stale", kind === "stale" || kind === "disconnected");
  }
  function clock(ms) { return new Date(ms).toLocaleTimeString(); }
  function markDown(kind, why) {
    if (!state.since) state.since = Date.now();
    setConn(kind, kind + " since " + clock(state.since) + (why ? " · " + why : ""));
  }
  setInterval(function () {  // stale: nothing (not even a heartbeat) for 2.5 intervals
    var el = $("conn");
    if (el.getAttribute("data-state") === "live" && Date.now() - state.lastEventAt > 2.5 * state.heartbeatMs) {
      state.since = state.lastEventAt;
      markDown("stale", "no data from the server");
    }
  }, 1000);

  // ------------------------------------------------------------------ stream (SSE over fetch)
  function headers() {
    var h = {Accept: "text/event-stream"};
    if (state.token) h.Authorization = "Bearer " + state.token;
    if (state.lastId) h["Last-Event-ID"] = state.lastId;
    return h;
  }
  function dispatch(event, data, id) {
    state.lastEventAt = Date.now();
    if (id) state.lastId = id;
    var msg = data ? JSON.parse(data) : {};
    if (event === "snapshot" || event === "update") {
      state.since = null;
      setConn("live", "live");
      (event === "snapshot" ? onSnapshot : onUpdate)(msg);
    } else if (event === "status" || event === "heartbeat") {
      if (msg.source === "down") {
        if (event === "status") state.since = msg.since;
        markDown("stale", "read model unavailable");
      } else if ($("conn").getAttribute("data-state") !== "live") {
        state.since = null;
        setConn("live", "live");
      }
    }
  }
  function parse(buffer) {  // returns the unparsed tail
    var parts = buffer.split("\n\n");
    for (var i = 0; i < parts.length - 1; i++) {
      var event = "message", data = [], id = null;
      parts[i].split("\n").forEach(function (line) {
        if (line.indexOf("data: ") === 0) data.push(line.slice(6));
        else if (line.indexOf("event: ") === 0) event = line.slice(7);
        else if (line.indexOf("id: ") === 0) id = line.slice(4);
      });
      if (data.length) dispatch(event, data.join("\n"), id);
    }
    return parts[parts.length - 1];
  }
  var retryMs = 1000;
  function reconnect(why) {
    markDown("disconnected", why);
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 5000);
  }
  function connect() {
    fetch("/api/stream", {headers: headers(), cache: "no-store"}).then(function (resp) {
      if (resp.status === 401) { askToken(); return; }
      if (!resp.ok || !resp.body) { reconnect("HTTP " + resp.status); return; }
      retryMs = 1000;
      var reader = resp.body.getReader(), decoder = new TextDecoder(), buffer = "";
      function pump() {
        return reader.read().then(function (r) {
          if (r.done) { reconnect("stream ended"); return; }
          buffer = parse(buffer + decoder.decode(r.value, {stream: true}));
          return pump();
        });
      }
      return pump();
    }).catch(function (err) { reconnect(String(err && err.message || err)); });
  }
  function askToken() {
    $("login").hidden = false;
    setConn("disconnected", "access token needed");
    $("login-token").focus();
  }
  $("login-form").addEventListener("submit", function (e) {
    e.preventDefault();
    state.token = $("login-token").value;
    try { sessionStorage.setItem("pm-polars-token", state.token); } catch (err) { /* private mode */ }
    $("login").hidden = true;
    connect();
  });

  // ------------------------------------------------------------------ interaction
  $("head").addEventListener("click", function (e) {
    var key = e.target.getAttribute && e.target.getAttribute("data-sort");
    if (!key) return;
    if (state.sortKey === key) state.sortAsc = !state.sortAsc;
    else { state.sortKey = key; state.sortAsc = TEXT.some(function (t) { return t[0] === key; }); }
    renderHead();
    sortRows();
  });
  $("rows").addEventListener("click", function (e) {
    var tr = e.target.closest && e.target.closest("[data-portfolio-id]");
    if (!tr) return;
    if (state.selected && state.rows[state.selected]) state.rows[state.selected].tr.classList.remove("selected");
    state.selected = tr.getAttribute("data-portfolio-id");
    tr.classList.add("selected");
    renderPositions();
    drawChart();
  });
  $("pos-close").addEventListener("click", function () {
    if (state.selected && state.rows[state.selected]) state.rows[state.selected].tr.classList.remove("selected");
    state.selected = null;
    renderPositions();
    drawChart();
  });
  window.addEventListener("resize", drawChart);

  try { state.token = sessionStorage.getItem("pm-polars-token"); } catch (err) { state.token = null; }
  renderHead();
  drawChart();
  connect();
})();
