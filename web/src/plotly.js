// plotly.js (5 MB) is loaded on first use, from this page's own assets.

let loading = null;

// The ?v= of this bundle's URL, reused for plotly's so both are cached
// together.
const bundleURL = document.currentScript && document.currentScript.src;

export function loadPlotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (loading) return loading;
  loading = new Promise((resolve, reject) => {
    const url = bundleURL ? new URL("plotly.min.js" + new URL(bundleURL).search, bundleURL).href : "ui/plotly.min.js";
    const s = document.createElement("script");
    s.src = url;
    s.async = true;
    s.onload = () => (window.Plotly ? resolve(window.Plotly) : reject(new Error("plotly did not load")));
    s.onerror = () => {
      loading = null;
      reject(new Error("plotly could not be loaded"));
    };
    document.head.append(s);
  });
  return loading;
}
