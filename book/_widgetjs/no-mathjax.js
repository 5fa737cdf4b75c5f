// This book has no mathematics. Sphinx still links MathJax on some pages (pages whose outputs
// carry a text/latex form, and any page once the HTML assets policy is "always"); by default it
// would load MathJax from a public CDN, which the offline browser test forbids. _config.yml
// points `mathjax_path` here instead, so the script loads locally and does nothing.
