// Draws the charts a console page embeds as JSON: <script type="application/json" data-chart="CANVAS_ID">
// holding a Chart.js configuration (built by console/charts.py). Redraws after an htmx swap settles (live parts);
// a fragment htmx swaps in carries its JSON in <template data-chart> instead, since htmx (allowScriptTags
// off) drops script elements from swapped content.
// The tables next to each chart hold the same figures, so a page still reads without this script.
(function () {
  "use strict";

  function draw(root) {
    if (typeof window.Chart === "undefined") {
      return;
    }
    var nodes = root.querySelectorAll('script[type="application/json"][data-chart], template[data-chart]');
    Array.prototype.forEach.call(nodes, function (node) {
      var canvas = document.getElementById(node.getAttribute("data-chart"));
      if (!canvas) {
        return;
      }
      var config;
      try {
        config = JSON.parse(node.content ? node.content.textContent : node.textContent);
      } catch (error) {
        canvas.setAttribute("data-chart-error", "bad data");
        return;
      }
      var previous = window.Chart.getChart(canvas);
      if (previous) {
        previous.destroy();
      }
      new window.Chart(canvas, config);
      canvas.setAttribute("data-chart-drawn", "1");
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () {
      draw(document);
    });
  } else {
    draw(document);
  }
  // After settling, not swapping: while it settles htmx gives the new elements the old ones' attributes
  // (same ids), then restores theirs, which resets a canvas drawn in between.
  document.addEventListener("htmx:afterSettle", function (event) {
    draw(event.target);
  });
})();
