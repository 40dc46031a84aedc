// The photo library panel: "where is Bo?" - the photos of the library where a concept is, as
// thumbnails with its box drawn (GET /v1/library/find, then each thumbnail with the API key).
// Self-contained: it only shares the saved API key with app.js.
"use strict";

(function () {
  const panel = document.getElementById("library-panel");
  if (!panel) return;
  const form = document.getElementById("library-form");
  const out = document.getElementById("library-results");

  function auth() {
    const key = localStorage.getItem("rap-api-key") || "";
    return key ? { Authorization: "Bearer " + key } : {};
  }

  async function get(path) {
    const res = await fetch(path, { headers: auth() });
    if (!res.ok) {
      let message = res.status + " " + res.statusText;
      try {
        const body = await res.json();
        if (body && body.error && body.error.message) message = body.error.message;
      } catch (_) { /* not JSON */ }
      throw new Error(message);
    }
    return res;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = form.elements.concept.value.trim();
    if (!name) return;
    out.textContent = "Searching...";
    try {
      const found = await (await get("/v1/library/find?limit=60&concept=" + encodeURIComponent(name))).json();
      out.textContent = "";
      const title = document.createElement("p");
      title.dataset.testid = "library-count";
      title.textContent = "<" + found.concept + "> appears in " + found.total + " photo" + (found.total === 1 ? "" : "s");
      out.appendChild(title);
      const grid = document.createElement("div");
      grid.className = "library-grid";
      out.appendChild(grid);
      for (const photo of found.photos) {
        const figure = document.createElement("figure");
        const img = document.createElement("img");
        img.alt = photo.path;
        img.title = photo.path + " (confidence " + photo.confidence.toFixed(2) + ")";
        figure.appendChild(img);
        grid.appendChild(figure);
        get(photo.thumbnail)
          .then((res) => res.blob())
          .then((blob) => { img.src = URL.createObjectURL(blob); })
          .catch(() => { img.alt = photo.path + " (cannot be read)"; });
      }
    } catch (e) {
      out.textContent = e.message;
    }
  });
})();
