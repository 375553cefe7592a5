/* A small line chart on <canvas> for the pm-polars dashboard (no dependencies).
 * LineChart(canvas).draw(series): series = [{label, color, width, dash, points: [[tMs, v], ...]}].
 * Axes: time (shared, local clock) and value (min..max over the visible series, 0 included). */
"use strict";
(function (global) {
  function niceLabel(v) {
    var a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(2) + "M";
    if (a >= 1e3) return (v / 1e3).toFixed(1) + "k";
    return v.toFixed(2);
  }
  function hhmmss(t) {
    var d = new Date(t);
    return d.toTimeString().slice(0, 8);
  }
  // The size is read only when the canvas is resized (ResizeObserver), never while drawing:
  // reading clientWidth after DOM changes would force a layout of the whole page.
  function LineChart(canvas) {
    var self = this;
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.size = [canvas.clientWidth, canvas.clientHeight];
    this.last = [];
    if (global.ResizeObserver) {
      new global.ResizeObserver(function (entries) {
        var box = entries[0].contentRect;
        self.size = [box.width, box.height];
        self.draw(self.last);
      }).observe(canvas);
    }
  }
  LineChart.prototype.resize = function () {
    var ratio = global.devicePixelRatio || 1;
    var w = this.size[0], h = this.size[1];
    if (this.canvas.width !== Math.round(w * ratio) || this.canvas.height !== Math.round(h * ratio)) {
      this.canvas.width = Math.round(w * ratio);
      this.canvas.height = Math.round(h * ratio);
    }
    this.ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    return [w, h];
  };
  LineChart.prototype.draw = function (series) {
    this.last = series;
    var size = this.resize(), w = size[0], h = size[1], ctx = this.ctx;
    ctx.clearRect(0, 0, w, h);
    var t0 = Infinity, t1 = -Infinity, lo = 0, hi = 0, i, j, s, p;
    for (i = 0; i < series.length; i++) {
      s = series[i].points;
      for (j = 0; j < s.length; j++) {
        p = s[j];
        if (p[0] < t0) t0 = p[0];
        if (p[0] > t1) t1 = p[0];
        if (p[1] < lo) lo = p[1];
        if (p[1] > hi) hi = p[1];
      }
    }
    var left = 64, right = 8, top = 6, bottom = 18;
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#7d8893";
    ctx.strokeStyle = "#263039";
    ctx.lineWidth = 1;
    if (!(t1 > t0)) {
      ctx.fillText("P&L chart: waiting for updates", left, h / 2);
      return;
    }
    if (hi === lo) { hi += 1; lo -= 1; }
    var pad = (hi - lo) * 0.05; hi += pad; lo -= pad;
    var sx = (w - left - right) / (t1 - t0), sy = (h - top - bottom) / (hi - lo);
    function X(t) { return left + (t - t0) * sx; }
    function Y(v) { return top + (hi - v) * sy; }
    for (i = 0; i <= 4; i++) {  // grid and value labels
      var v = lo + (hi - lo) * i / 4, y = Y(v);
      ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(w - right, y); ctx.stroke();
      ctx.fillText(niceLabel(v), 4, y + 4);
    }
    ctx.strokeStyle = "#3b4650";
    ctx.beginPath(); ctx.moveTo(left, Y(0)); ctx.lineTo(w - right, Y(0)); ctx.stroke();
    ctx.fillText(hhmmss(t0), left, h - 4);
    ctx.fillText(hhmmss(t1), w - right - 50, h - 4);
    for (i = 0; i < series.length; i++) {
      s = series[i];
      if (!s.points.length) continue;
      ctx.strokeStyle = s.color; ctx.lineWidth = s.width || 1.5;
      ctx.setLineDash(s.dash || []);
      ctx.beginPath();
      for (j = 0; j < s.points.length; j++) {
        p = s.points[j];
        if (j === 0) ctx.moveTo(X(p[0]), Y(p[1])); else ctx.lineTo(X(p[0]), Y(p[1]));
      }
      ctx.stroke();
    }
    ctx.setLineDash([]);
  };
  global.LineChart = LineChart;
})(window);
