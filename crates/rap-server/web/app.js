// The rap page: a multi-turn chat about a photo (streamed, stoppable, rendered as Markdown,
// kept per browser tab) that draws the retrieved concepts' boxes on the photo, and a gallery
// of concepts (add, edit, delete). On a phone the two are tabs, chat first. It uses only the
// public /v1 API, with the API key from localStorage when the server needs one.
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
    if (opts.signal && opts.signal.aborted) throw e;
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

// A stored image of the memory: the <img> gets its source once the bytes are here, and is
// replaced by a note if they cannot be fetched (never a broken image).
function storedImage(id, alt) {
  const img = el("img", { alt });
  imageUrl(id).then((u) => { img.src = u; }).catch(() => {
    img.replaceWith(el("span", { class: "missing", title: alt }, "photo unavailable"));
  });
  return img;
}

// "a, b, a" -> ["a", "b"] (first spelling kept, compared without case).
function nameList(text) {
  const seen = new Set();
  const out = [];
  for (const raw of text.split(",")) {
    const a = raw.trim();
    if (a && !seen.has(a.toLowerCase())) { seen.add(a.toLowerCase()); out.push(a); }
  }
  return out;
}

// ---- Markdown ----

// Answers are Markdown, rendered by markdown-it (vendored under /vendor, MIT). It is safe for
// untrusted text as configured here: `html: false` escapes any HTML in the model's output,
// and its link validation refuses javascript:, vbscript:, file: and data: links. Images are
// turned off, so an answer cannot make the page load anything.
const markdown = (() => {
  if (typeof window.markdownit !== "function") return null;
  const md = window.markdownit({ html: false, linkify: false, breaks: true });
  md.disable("image");
  const linkOpen = md.renderer.rules.link_open ||
    ((tokens, idx, options, env, self) => self.renderToken(tokens, idx, options));
  md.renderer.rules.link_open = (tokens, idx, options, env, self) => {
    tokens[idx].attrSet("target", "_blank");
    tokens[idx].attrSet("rel", "noopener noreferrer nofollow");
    return linkOpen(tokens, idx, options, env, self);
  };
  return md;
})();

function renderMarkdown(target, text) {
  if (markdown) target.innerHTML = markdown.render(text);
  else target.textContent = text; // the library failed to load: plain text, still safe
}

// ---- tabs (a phone shows one panel at a time; a wide screen shows both) ----

function showTab(name) {
  document.querySelector("main").dataset.tab = name;
  for (const t of ["chat", "concepts"]) $("tab-" + t).setAttribute("aria-selected", String(t === name));
  sessionStorage.setItem("rap-tab", name);
  if (name === "chat") drawBoxes();
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
  $("concept-count").textContent = concepts.length ? String(concepts.length) : "";
  const g = $("gallery");
  g.replaceChildren();
  if (!concepts.length) {
    g.append(el("p", { class: "empty" }, "No concepts yet: add one with a photo above."));
    return;
  }
  for (const c of concepts) {
    const thumbs = el("div", { class: "thumbs" + (c.images.length > 1 ? " many" : "") });
    for (const img of c.images) thumbs.append(storedImage(img.id, c.name + " photo"));
    const card = el("article", { class: "card", "data-testid": "concept-card", "data-name": c.name },
      thumbs,
      el("div", { class: "body" },
        el("div", { class: "name" }, c.name),
        el("div", { class: "meta" }, [c.category, c.images.length + " photo" + (c.images.length > 1 ? "s" : "")].filter(Boolean).join(" · ")),
        c.aliases.length ? el("div", { class: "meta", "data-testid": "aliases" }, "also: " + c.aliases.join(", ")) : "",
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

let addFiles = []; // { file, url } in the order chosen

function isImage(f) { return f.type.startsWith("image/") || /\.(jpe?g|png|webp|gif|bmp|tiff?)$/i.test(f.name); }

function setAddFiles(files) {
  const list = Array.from(files);
  const bad = list.filter((f) => !isImage(f));
  if (bad.length) showError("Not a photo: " + bad.map((f) => f.name).join(", "));
  for (const file of list.filter(isImage)) addFiles.push({ file, url: URL.createObjectURL(file) });
  renderPreviews();
}

function removeAddFile(entry) {
  URL.revokeObjectURL(entry.url);
  addFiles = addFiles.filter((e) => e !== entry);
  renderPreviews();
}

function clearAddFiles() {
  for (const e of addFiles) URL.revokeObjectURL(e.url);
  addFiles = [];
  renderPreviews();
}

function renderPreviews() {
  const p = $("add-previews");
  p.replaceChildren();
  for (const entry of addFiles) {
    const img = el("img", { alt: entry.file.name, title: entry.file.name });
    // A file the browser cannot show is named instead (the server says what is wrong with it).
    img.onerror = () => img.replaceWith(el("span", { class: "missing", title: entry.file.name }, entry.file.name));
    img.src = entry.url;
    p.append(el("figure", { "data-testid": "preview" },
      img,
      el("button", { type: "button", class: "remove", "data-testid": "remove-preview",
        "aria-label": "remove " + entry.file.name, title: "remove this photo", onclick: () => removeAddFile(entry) }, "×")));
  }
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
  for (const a of nameList(form.aliases.value)) data.append("alias", a);
  for (const { file } of addFiles) data.append("image", file, file.name);
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  button.textContent = "Remembering...";
  try {
    await api("/v1/concepts", { method: "POST", body: data });
    clearError();
    form.reset();
    clearAddFiles();
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
  f.aliases.value = c.aliases.join(", ");
  $("edit-files").value = "";
  const box = $("edit-images");
  box.replaceChildren();
  for (const img of c.images) {
    const remove = el("button", { type: "button", class: "danger", title: "remove this photo", onclick: () => removeImage(c, img.id) }, "×");
    if (c.images.length < 2) remove.disabled = true;
    box.append(el("figure", {}, storedImage(img.id, c.name + " photo"), remove));
  }
  if (!$("edit-dialog").open) $("edit-dialog").showModal();
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
  const wanted = nameList(f.aliases.value);
  const has = (list, a) => list.some((b) => b.toLowerCase() === a.toLowerCase());
  const add = wanted.filter((a) => !has(c.aliases, a));
  const remove = c.aliases.filter((a) => !has(wanted, a));
  if (add.length) patch.add_aliases = add;
  if (remove.length) patch.remove_aliases = remove;
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
//
// One conversation per browser tab, kept in sessionStorage so that a reload keeps it: the
// photo (as a data: URL, the bytes the server saw), the turns, and the retrieved concepts.
// Every request sends the whole conversation; the server lays out its first user turn, with
// the photo, in the RAP format and keeps the later turns as they are.

const CHAT_KEY = "rap-chat";
// sessionStorage holds about 5 MB per site: a larger photo is scaled down before use.
const MAX_PHOTO_URL = 3000000;
const MAX_PHOTO_SIDE = 2048;

function emptyChat() { return { photo: null, messages: [], rap: null }; }

function loadChat() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(CHAT_KEY) || "null");
    if (saved && Array.isArray(saved.messages)) return Object.assign(emptyChat(), saved);
  } catch (_) { /* unreadable: start afresh */ }
  return emptyChat();
}

function saveChat() {
  try {
    sessionStorage.setItem(CHAT_KEY, JSON.stringify(chat));
  } catch (e) {
    showError("This chat is too large to keep in this tab: a reload will lose it. (" + e.message + ")");
  }
}

let chat = loadChat();
let running = null; // { controller, reply, node } while an answer streams

function fileToDataUrl(f) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(new Error("could not read " + f.name));
    r.readAsDataURL(f);
  });
}

// The photo as a data: URL small enough to keep in the tab (scaled to MAX_PHOTO_SIDE as a JPEG
// when it is not).
async function photoUrl(f) {
  const url = await fileToDataUrl(f);
  if (url.length <= MAX_PHOTO_URL) return url;
  const bitmap = await createImageBitmap(f).catch(() => { throw new Error("Not a photo this browser can read: " + f.name); });
  const scale = Math.min(1, MAX_PHOTO_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  return canvas.toDataURL("image/jpeg", 0.9);
}

async function setChatFile(files) {
  const f = files[0];
  $("chat-file").value = "";
  if (!f) return;
  if (!isImage(f)) { showError("Not a photo: " + f.name); return; }
  try {
    const url = await photoUrl(f);
    stopAnswer();
    chat = emptyChat(); // a new photo, a new chat
    chat.photo = { name: f.name, url };
    saveChat();
    renderChat();
    $("question").focus();
  } catch (e) {
    showError(e.message);
  }
}

function newChat() {
  stopAnswer();
  chat = emptyChat();
  saveChat();
  renderChat();
  clearError();
}

function renderChat() {
  renderStage();
  renderRetrieved();
  renderTranscript();
}

function renderStage() {
  const stage = $("stage");
  if (!chat.photo) {
    stage.replaceChildren();
    stage.hidden = true;
    return;
  }
  let img = stage.querySelector("img");
  if (!img || img.getAttribute("src") !== chat.photo.url) {
    img = el("img", { alt: "the photo you asked about", "data-testid": "chat-photo" });
    img.onload = () => drawBoxes();
    img.src = chat.photo.url;
    stage.replaceChildren(img, el("canvas", { "data-testid": "boxes" }));
    new ResizeObserver(() => drawBoxes()).observe(img);
  }
  stage.hidden = false;
}

function drawBoxes() {
  const img = $("stage").querySelector("img");
  const canvas = $("stage").querySelector("canvas");
  if (!img || !canvas || !img.naturalWidth) return;
  canvas.width = img.clientWidth;
  canvas.height = img.clientHeight;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const sx = img.clientWidth / img.naturalWidth;
  const sy = img.clientHeight / img.naturalHeight;
  const used = (chat.rap && chat.rap.concepts) || [];
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

function renderRetrieved() {
  const box = $("retrieved");
  box.replaceChildren();
  const rap = chat.rap;
  if (!rap) { drawBoxes(); return; }
  const used = rap.concepts || [];
  if (!used.length) {
    box.append(el("p", { class: "meta", "data-testid": "no-concepts" }, "None of your concepts was recognised."));
  } else {
    const ul = el("ul");
    used.forEach((c, i) => {
      const li = el("li", { "data-testid": "retrieved-concept", "data-name": c.name },
        el("span", { class: "swatch", style: "background:" + COLORS[i % COLORS.length] }),
        c.name + " · " + c.score.toFixed(2) + " · " + c.via);
      // Found in the photo by mistake? Teach the memory: this (box of the) photo is not it.
      if ((c.via === "image" || c.via === "text+image") && chat.photo) {
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
  drawBoxes();
}

async function notConcept(button, c) {
  button.disabled = true;
  try {
    const photo = await (await fetch(chat.photo.url)).blob();
    const form = new FormData();
    form.append("image", photo, chat.photo.name);
    if (c.box) form.append("box", c.box.join(","));
    await api("/v1/concepts/" + encodeURIComponent(c.name) + "/negatives", { method: "POST", body: form });
    button.replaceWith(el("span", { class: "meta", "data-testid": "not-concept-saved" }, "noted: not " + c.name));
  } catch (e) {
    button.disabled = false;
    showError(e.message);
  }
}

function messageNode(m) {
  if (m.role === "user") {
    return el("div", { class: "msg user", "data-testid": "msg-user" }, el("p", {}, m.text));
  }
  const body = el("div", { class: "md" });
  renderMarkdown(body, m.text);
  const node = el("div", { class: "msg assistant", "data-testid": "msg-assistant" }, body);
  if (m.stopped) node.append(el("p", { class: "note", "data-testid": "stopped" }, "stopped"));
  return node;
}

function renderTranscript() {
  const t = $("transcript");
  t.replaceChildren(...chat.messages.map(messageNode));
  $("chat-empty").hidden = chat.messages.length > 0 || !!chat.photo;
}

function setBusy(busy) {
  $("ask").hidden = busy;
  $("stop").hidden = !busy;
  $("chat-panel").dataset.busy = String(busy);
}

// The conversation as OpenAI messages: the photo goes with the first question.
function apiMessages(messages) {
  let photoSent = false;
  const out = [];
  for (const m of messages) {
    if (m.role === "assistant" && !m.text) continue;
    if (m.role === "user" && chat.photo && !photoSent) {
      photoSent = true;
      out.push({ role: "user", content: [{ type: "text", text: m.text }, { type: "image_url", image_url: { url: chat.photo.url } }] });
    } else {
      out.push({ role: m.role, content: m.text });
    }
  }
  return out;
}

// Reads a server-sent event stream of chat chunks, calling `onChunk` with each.
async function readEvents(res, onChunk) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
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
        onChunk(chunk);
      }
    }
  }
}

async function ask(e) {
  e.preventDefault();
  if (running) return;
  const question = $("question").value.trim();
  if (!question) { showError("Type a question."); return; }
  clearError();
  const user = { role: "user", text: question };
  const reply = { role: "assistant", text: "" };
  const body = JSON.stringify({ model: "rap", stream: true, messages: apiMessages(chat.messages.concat([user])) });
  chat.messages.push(user, reply);
  $("question").value = "";
  renderTranscript();
  const node = $("transcript").lastElementChild;
  const md = node.querySelector(".md");
  const thinking = el("p", { class: "thinking", "data-testid": "thinking" }, "Looking at your concepts");
  node.append(thinking);
  node.scrollIntoView({ block: "nearest" });
  // Keeps the answer in sight as it grows, unless the reader has scrolled up.
  const follow = () => {
    const page = document.scrollingElement;
    if (page.scrollHeight - page.scrollTop - window.innerHeight < 160) node.scrollIntoView({ block: "nearest" });
  };
  const controller = new AbortController();
  running = { controller };
  setBusy(true);
  let frame = 0;
  const paint = () => { frame = 0; renderMarkdown(md, reply.text); follow(); };
  try {
    const res = await api("/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" }, body, signal: controller.signal,
    });
    await readEvents(res, (chunk) => {
      if (chunk.rap) {
        chat.rap = chunk.rap;
        renderRetrieved();
        thinking.textContent = "Thinking";
      }
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
      if (delta && delta.content) {
        reply.text += delta.content;
        thinking.remove();
        if (!frame) frame = requestAnimationFrame(paint);
      }
    });
  } catch (err) {
    if (!controller.signal.aborted) showError(err.message);
    if (!controller.signal.aborted || !reply.text) {
      // Nothing to keep: take the turn back, and the question back into the box.
      const at = chat.messages.indexOf(user); // -1 when a new chat has replaced this one
      if (at >= 0) chat.messages.splice(at, 2);
      if (!$("question").value) $("question").value = question;
    } else {
      reply.stopped = true;
    }
  } finally {
    if (frame) cancelAnimationFrame(frame);
    if (running && running.controller === controller) running = null;
    setBusy(false);
    saveChat();
    renderTranscript();
  }
}

// Stops the answer in progress: the request is aborted, and the server stops generating
// when its client goes away.
function stopAnswer() {
  if (running) running.controller.abort();
}

// ---- start ----

$("api-key").value = apiKey;
$("save-key").addEventListener("click", () => {
  apiKey = $("api-key").value.trim();
  localStorage.setItem("rap-api-key", apiKey);
  blobUrls.clear();
  loadConcepts();
});
$("tab-chat").addEventListener("click", () => showTab("chat"));
$("tab-concepts").addEventListener("click", () => showTab("concepts"));
$("add-form").addEventListener("submit", submitAdd);
$("add-files").addEventListener("change", (e) => setAddFiles(e.target.files));
dropZone($("add-drop"), setAddFiles);
$("edit-form").addEventListener("submit", saveEdit);
$("edit-cancel").addEventListener("click", () => $("edit-dialog").close());
$("chat-form").addEventListener("submit", ask);
$("question").addEventListener("keydown", (e) => {
  // Enter sends, Shift+Enter is a new line.
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $("chat-form").requestSubmit();
  }
});
$("stop").addEventListener("click", stopAnswer);
$("new-chat").addEventListener("click", newChat);
$("chat-file").addEventListener("change", (e) => setChatFile(e.target.files));
dropZone($("chat-panel"), setChatFile);
showTab(sessionStorage.getItem("rap-tab") === "concepts" ? "concepts" : "chat");
renderChat();
loadConcepts();
