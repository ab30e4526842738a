// The generator page. Every name from the server (the run's, the attributes', the paintings')
// goes into the page as text (textContent / option text), never as markup.
"use strict";

const $ = (id) => document.getElementById(id);
let info = null;

function tokenQuery() {
  const t = new URLSearchParams(location.search).get("token");
  return t ? [["token", t]] : [];
}

function setStatus(text, error) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", !!error);
}

function pictureUrl() {
  const q = new URLSearchParams(tokenQuery());
  q.set("seed", String(parseInt($("seed").value || "0", 10)));
  const mix = parseFloat($("mix").value);
  if (mix > 0) {
    q.set("seed2", String(parseInt($("seed2").value || "0", 10)));
    q.set("t", mix.toFixed(2));
  }
  for (const select of document.querySelectorAll("select[data-attribute]")) {
    if (select.value) q.append("attr", select.dataset.attribute + "=" + select.value);
  }
  if ($("style").value) q.set("style", $("style").value);
  return "api/image.png?" + q.toString();
}

async function generate() {
  const url = pictureUrl();
  setStatus($("style").value ? "painting..." : "generating...");
  const img = $("picture");
  const answer = await fetch(url, { credentials: "same-origin" });
  if (!answer.ok) {
    let detail = answer.statusText;
    try { detail = (await answer.json()).detail || detail; } catch (e) { /* not JSON */ }
    setStatus(detail, true);
    return;
  }
  const blob = await answer.blob();
  const old = img.dataset.objectUrl;
  const shown = URL.createObjectURL(blob);
  img.src = shown;
  img.dataset.objectUrl = shown;
  img.dataset.source = url;
  if (old) URL.revokeObjectURL(old);
  const link = $("download");
  link.href = shown;
  link.download = info.run + "-seed" + $("seed").value + ($("style").value ? "-styled" : "") + ".png";
  link.hidden = false;
  setStatus("seed " + $("seed").value + ($("style").value ? ", in the style of " + $("style").value : ""));
  document.body.dataset.generated = String((parseInt(document.body.dataset.generated || "0", 10)) + 1);
}

function build() {
  $("run").textContent = "run " + info.run + ", step " + info.step + ", " + info.size + " px";
  const box = $("attributes");
  const names = Object.keys(info.attributes);
  $("no-attributes").hidden = names.length > 0;
  for (const name of names) {
    const label = document.createElement("label");
    label.append(document.createTextNode(name + " "));
    const select = document.createElement("select");
    select.dataset.attribute = name;
    select.id = "attr-" + name;
    const any = document.createElement("option");
    any.value = "";
    any.textContent = "any";
    select.append(any);
    for (const value of info.attributes[name]) {
      const o = document.createElement("option");
      o.value = value;
      o.textContent = value;
      select.append(o);
    }
    label.append(select);
    box.append(label);
  }
  const style = $("style");
  for (const name of info.styles) {
    const o = document.createElement("option");
    o.value = name;
    o.textContent = name;
    style.append(o);
  }
  $("seed").max = String(info.max_seed);
  $("seed2").max = String(info.max_seed);
}

async function start() {
  const answer = await fetch("api/info?" + new URLSearchParams(tokenQuery()).toString(), { credentials: "same-origin" });
  if (!answer.ok) { setStatus("cannot read the run: " + answer.status, true); return; }
  info = await answer.json();
  build();
  $("controls").addEventListener("submit", (e) => { e.preventDefault(); generate(); });
  $("random").addEventListener("click", () => {
    $("seed").value = String(Math.floor(Math.random() * info.max_seed));
    generate();
  });
  $("mix").addEventListener("input", () => { $("mix-value").textContent = parseFloat($("mix").value).toFixed(2); });
  document.body.dataset.ready = "1";
  generate();
}

start();
