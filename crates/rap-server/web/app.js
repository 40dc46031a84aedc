// The rap page: a gallery of concepts (add, edit, delete) and a chat panel that streams an
// answer about a dropped photo and draws the retrieved concepts' boxes on it. It uses only
// the public /v1 API, with the API key from localStorage when the server needs one.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = ["#e5484d", "#1f6feb", "#30a46c", "#f76b15", "#8e4ec6", "#0090ff"];
let apiKey = localStorage.getItem("rap-api-key") || "";
const blobUrls = new Map(); // image id -> object URL

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (apiKey) h["Authorization"] = "Bearer " + apiKey;
  return h;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => { box.hidden = true; }, 12000);
}

function clearError() { $("error").hidden = true; }

// A readable message for a failed response.
async function failure(res) {
  let message = res.status + " " + res.statusText;
  try {
    const body = await res.json();
    if (body && body.error && body.error.message) message = body.error.message;
  } catch (_) { /* not JSON */ }
  if (res.status === 503 && res.headers.get("Retry-After")) {
    message = "The server is busy: try again in " + res.headers.get("Retry-After") + " s. (" + message + ")";
  } else if (res.status === 401) {
    message = "This server needs an API key: open \"API key\" at the top. (" + message + ")";
  } else if (res.status === 413) {
    message = "That is too large for the server. (" + message + ")";
  }
  return new Error(message);
}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = headers(opts.headers);
  let res;
  try {
    res = await fetch(path, opts);
  } catch (e) {
    throw new Error("Cannot reach the server: " + e.message);
  }
  if (!res.ok) throw await failure(res);
  return res;
}

async function imageUrl(id) {
  if (blobUrls.has(id)) return blobUrls.get(id);
  const res = await api("/v1/images/" + id);
  const url = URL.createObjectURL(await res.blob());
  blobUrls.set(id, url);
  return url;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

// ---- gallery ----

let concepts = [];

async function loadConcepts() {
  try {
    const res = await api("/v1/concepts");
    concepts = (await res.json()).concepts;
    renderGallery();
  } catch (e) {
    showError(e.message);
  }
}

function renderGallery() {
  const g = $("gallery");
  g.replaceChildren();
  if (!concepts.length) {
    g.append(el("p", { class: "empty" }, "No concepts yet: add one with a photo above."));
    return;
  }
  for (const c of concepts) {
    const thumbs = el("div", { class: "thumbs" + (c.images.length > 1 ? " many" : "") });
    for (const img of c.images) {
      const i = el("img", { alt: c.name + " photo", loading: "lazy" });
      imageUrl(img.id).then((u) => { i.src = u; }).catch(() => {});
      thumbs.append(i);
    }
    const card = el("article", { class: "card", "data-testid": "concept-card", "data-name": c.name },
      thumbs,
      el("div", { class: "body" },
        el("div", { class: "name" }, c.name),
        el("div", { class: "meta" }, [c.category, c.images.length + " photo" + (c.images.length > 1 ? "s" : "")].filter(Boolean).join(" · ")),
        c.aliases.length ? el("div", { class: "meta" }, "also: " + c.aliases.join(", ")) : "",
        c.info ? el("p", { class: "info" }, c.info) : ""),
      el("div", { class: "actions" },
        el("button", { type: "button", class: "secondary", "data-testid": "edit", onclick: () => openEdit(c) }, "Edit"),
        el("button", { type: "button", class: "danger", "data-testid": "delete", onclick: () => removeConcept(c) }, "Delete")));
    g.append(card);
  }
}

async function removeConcept(c) {
  if (!confirm("Forget " + c.name + " and its photos?")) return;
  try {
    await api("/v1/concepts/" + encodeURIComponent(c.name), { method: "DELETE" });
    clearError();
    await loadConcepts();
  } catch (e) {
    showError(e.message);
  }
}

// ---- adding ----

let addFiles = [];

function isImage(f) { return f.type.startsWith("image/") || /\.(jpe?g|png|webp|gif|bmp|tiff?)$/i.test(f.name); }

function setAddFiles(files) {
  const list = Array.from(files);
  const bad = list.filter((f) => !isImage(f));
  if (bad.length) showError("Not a photo: " + bad.map((f) => f.name).join(", "));
  addFiles = addFiles.concat(list.filter(isImage));
  const p = $("add-previews");
  p.replaceChildren();
  for (const f of addFiles) p.append(el("img", { src: URL.createObjectURL(f), alt: f.name, title: f.name }));
}

function dropZone(zone, onFiles) {
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files.length) onFiles(e.dataTransfer.files);
  });
}

async function submitAdd(e) {
  e.preventDefault();
  const form = e.target;
  if (!addFiles.length) { showError("Add at least one photo of it."); return; }
  const data = new FormData();
  data.append("name", form.name.value.trim());
  data.append("category", form.category.value.trim());
  data.append("info", form.info.value.trim());
  for (const a of form.aliases.value.split(",")) if (a.trim()) data.append("alias", a.trim());
  for (const f of addFiles) data.append("image", f, f.name);
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  button.textContent = "Remembering...";
  try {
    await api("/v1/concepts", { method: "POST", body: data });
    clearError();
    form.reset();
    addFiles = [];
    $("add-previews").replaceChildren();
    await loadConcepts();
  } catch (err) {
    showError(err.message);
  } finally {
    button.disabled = false;
    button.textContent = "Remember";
  }
}

// ---- editing ----

let editing = null;

function openEdit(c) {
  editing = c;
  const f = $("edit-form");
  $("edit-title").textContent = c.name;
  f.name.value = c.name;
  f.category.value = c.category;
  f.info.value = c.info;
  $("edit-files").value = "";
  const box = $("edit-images");
  box.replaceChildren();
  for (const img of c.images) {
    const i = el("img", { alt: c.name + " photo" });
    imageUrl(img.id).then((u) => { i.src = u; }).catch(() => {});
    const remove = el("button", { type: "button", class: "danger", title: "remove this photo", onclick: () => removeImage(c, img.id) }, "×");
    if (c.images.length < 2) remove.disabled = true;
    box.append(el("figure", {}, i, remove));
  }
  $("edit-dialog").showModal();
}

async function removeImage(c, id) {
  try {
    const res = await api("/v1/concepts/" + encodeURIComponent(c.name) + "/images/" + id, { method: "DELETE" });
    const updated = await res.json();
    await loadConcepts();
    openEdit(updated);
  } catch (e) {
    showError(e.message);
  }
}

async function saveEdit(e) {
  e.preventDefault();
  const f = $("edit-form");
  const c = editing;
  const patch = {};
  if (f.name.value.trim() !== c.name) patch.name = f.name.value.trim();
  if (f.category.value.trim() !== c.category) patch.category = f.category.value.trim();
  if (f.info.value.trim() !== c.info) patch.info = f.info.value.trim();
  try {
    let name = c.name;
    if (Object.keys(patch).length) {
      const res = await api("/v1/concepts/" + encodeURIComponent(c.name), {
        method: "PATCH", headers: { "Content-Type": "application/json" }, body: JSON.stringify(patch),
      });
      name = (await res.json()).name;
    }
    const files = $("edit-files").files;
    if (files.length) {
      const data = new FormData();
      for (const file of files) data.append("image", file, file.name);
      await api("/v1/concepts/" + encodeURIComponent(name) + "/images", { method: "POST", body: data });
    }
    clearError();
    $("edit-dialog").close();
    await loadConcepts();
  } catch (err) {
    showError(err.message);
  }
}

// ---- chat ----

let chatFile = null;
let lastConcepts = [];

function setChatFile(files) {
  const f = files[0];
  if (!f) return;
  if (!isImage(f)) { showError("Not a photo: " + f.name); return; }
  chatFile = f;
  const img = $("chat-photo");
  img.onload = () => drawBoxes(lastConcepts);
  img.src = URL.createObjectURL(f);
  $("stage").hidden = false;
  lastConcepts = [];
  $("retrieved").replaceChildren();
  $("answer").textContent = "";
}

function drawBoxes(used) {
  const img = $("chat-photo");
  const canvas = $("boxes");
  if (!img.naturalWidth) return;
  canvas.width = img.clientWidth;
  canvas.height = img.clientHeight;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const sx = img.clientWidth / img.naturalWidth;
  const sy = img.clientHeight / img.naturalHeight;
  used.forEach((c, i) => {
    if (!c.box) return;
    const [x1, y1, x2, y2] = c.box;
    const color = COLORS[i % COLORS.length];
    ctx.strokeStyle = color;
    ctx.lineWidth = 3;
    ctx.strokeRect(x1 * sx, y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy);
    const label = c.name + " " + c.score.toFixed(2);
    ctx.font = "bold 14px system-ui, sans-serif";
    const w = ctx.measureText(label).width + 8;
    ctx.fillStyle = color;
    ctx.fillRect(x1 * sx, Math.max(0, y1 * sy - 20), w, 20);
    ctx.fillStyle = "#fff";
    ctx.fillText(label, x1 * sx + 4, Math.max(14, y1 * sy - 5));
  });
}

function showRetrieved(rap) {
  lastConcepts = rap.concepts || [];
  const box = $("retrieved");
  box.replaceChildren();
  if (!lastConcepts.length) {
    box.append(el("p", { class: "empty", "data-testid": "no-concepts" }, "None of your concepts was recognised."));
  } else {
    const ul = el("ul");
    lastConcepts.forEach((c, i) => {
      const li = el("li", { "data-testid": "retrieved-concept", "data-name": c.name },
        el("span", { class: "swatch", style: "background:" + COLORS[i % COLORS.length] }),
        c.name + " · " + c.score.toFixed(2) + " · " + c.via);
      // Found in the photo by mistake? Teach the memory: this (box of the) photo is not it.
      if ((c.via === "image" || c.via === "text+image") && chatFile) {
        li.append(" ", el("button", { type: "button", class: "link", "data-testid": "not-concept",
          title: "This is not " + c.name + ": remember it as a negative example",
          onclick: (e) => notConcept(e.currentTarget, c) }, "not " + c.name));
      }
      ul.append(li);
    });
    box.append(ul);
  }
  if (rap.mode === "text-only") box.append(el("p", { class: "meta" }, "The model reads the concepts as text (it cannot see photos)."));
  for (const w of rap.warnings || []) box.append(el("p", { class: "meta" }, w));
  drawBoxes(lastConcepts);
}

async function notConcept(button, c) {
  button.disabled = true;
  const form = new FormData();
  form.append("image", chatFile);
  if (c.box) form.append("box", c.box.join(","));
  try {
    await api("/v1/concepts/" + encodeURIComponent(c.name) + "/negatives", { method: "POST", body: form });
    button.replaceWith(el("span", { class: "meta", "data-testid": "not-concept-saved" },
      "noted: not " + c.name));
  } catch (e) {
    button.disabled = false;
    showError(e.message);
  }
}

function fileToDataUrl(f) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(new Error("could not read " + f.name));
    r.readAsDataURL(f);
  });
}

async function ask(e) {
  e.preventDefault();
  const question = $("question").value.trim();
  if (!question) { showError("Type a question."); return; }
  const content = [{ type: "text", text: question }];
  if (chatFile) content.push({ type: "image_url", image_url: { url: await fileToDataUrl(chatFile) } });
  const button = $("ask");
  button.disabled = true;
  $("answer").textContent = "";
  $("retrieved").replaceChildren();
  try {
    const res = await api("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: "rap", stream: true, messages: [{ role: "user", content }] }),
    });
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") continue;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message);
          if (chunk.rap) showRetrieved(chunk.rap);
          const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
          if (delta && delta.content) $("answer").textContent += delta.content;
        }
      }
    }
    clearError();
  } catch (err) {
    showError(err.message);
  } finally {
    button.disabled = false;
  }
}

// ---- start ----

$("api-key").value = apiKey;
$("save-key").addEventListener("click", () => {
  apiKey = $("api-key").value.trim();
  localStorage.setItem("rap-api-key", apiKey);
  blobUrls.clear();
  loadConcepts();
});
$("add-form").addEventListener("submit", submitAdd);
$("add-files").addEventListener("change", (e) => setAddFiles(e.target.files));
dropZone($("add-drop"), setAddFiles);
$("edit-form").addEventListener("submit", saveEdit);
$("edit-cancel").addEventListener("click", () => $("edit-dialog").close());
$("chat-form").addEventListener("submit", ask);
$("chat-file").addEventListener("change", (e) => setChatFile(e.target.files));
dropZone($("chat-drop"), setChatFile);
window.addEventListener("resize", () => drawBoxes(lastConcepts));
loadConcepts();
