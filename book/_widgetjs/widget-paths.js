// Loaded between require.js and embed-amd.js (see README.md, "Fonts").
// The widget bundles locate their Font Awesome fonts next to their own AMD module URL, which
// require.js would otherwise resolve against the page's folder (book/@jupyter-widgets/...),
// where nothing is served. Map every @jupyter-widgets module name to fa5/ beside this file, so
// the fonts resolve to _static/fa5/<hash>.woff2, which the book ships.
(function () {
  var fonts = document.currentScript.src.replace(/[^/]*$/, "") + "fa5";
  require.config({paths: {
    "@jupyter-widgets/html-manager/dist": fonts,
    "@jupyter-widgets": fonts
  }});
})();
