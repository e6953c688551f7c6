// MathJax 3 for the site: the math pymdownx.arithmatex marks in Markdown pages (\( \) and \[ \]) and the $ and $$
// math of the notebook pages' Markdown cells (mkdocs-jupyter); code (pre, code) is never touched
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
  },
};
document$.subscribe(() => {
  MathJax.startup.output.clearCache();
  MathJax.typesetClear();
  MathJax.texReset();
  MathJax.typesetPromise();
});
