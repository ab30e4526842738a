"use strict";
// headshot review: a keyboard-first grid. Every text that came from a scraped page goes into
// the DOM with textContent, never as HTML.
(() => {
  const $ = (id) => document.getElementById(id);
  const PAGE = 400;
  const SIZES = [64, 80, 96, 128, 160];
  const SHORT = { monochrome: "mono", sharpness: "sharp", face_size: "size", face_share: "share",
                  published_after: "date", duplicate: "dup" };
  const KEY = { a: "accept", r: "reject", s: "skip" };
  const S = {
    view: "queue", arg: "", snap: null, total: 0, items: [], index: new Map(), focus: 0,
    sel: new Set(), anchor: 0, loading: null, tags: {}, filters: [], views: {}, attributes: [],
    pending: 0, sinceLearner: 0, size: 80, counts: null, learner: null,
  };

  async function api(method, path, body) {
    const r = await fetch(path, {
      method, credentials: "same-origin",
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) {
      const d = data.detail;
      const e = new Error(typeof d === "string" ? d : d ? JSON.stringify(d) : `HTTP ${r.status}`);
      e.status = r.status;
      throw e;
    }
    return data;
  }

  function reviewer() { return $("reviewer").value.trim() || "reviewer"; }
  function say(text, error) { const el = $("status"); el.textContent = text || ""; el.className = error ? "error" : ""; }
  function fmt(x) { return x === null || x === undefined ? "" : Math.abs(x) >= 100 ? x.toFixed(0) : Number(x.toPrecision(3)).toString(); }
  function setBusy() { document.body.dataset.pending = String(S.pending); }

  function counter() {
    const c = S.counts;
    let text = c ? `${c.left} left of ${c.queue} in the queue · ${c.decided} decided · ${c.total} crops` : "";
    text += ` · ${S.view} view: ${S.total} crops`;
    if (S.pending) text += ` · saving ${S.pending}`;
    $("counter").textContent = text;
  }

  function why(item) {
    const r = item.reasons.find((x) => x.doubtful) || item.reasons.find((x) => !x.passed) || item.reasons[0];
    return r ? `${SHORT[r.filter] || r.filter} ${fmt(r.score)}/${fmt(r.threshold)}${r.passed ? "" : " ✗"}` : "no verdict";
  }

  function line(cls, text) { const d = document.createElement("div"); d.className = cls; d.textContent = text; return d; }

  function makeCell(item, i) {
    const c = document.createElement("div");
    c.className = "cell";
    c.dataset.i = String(i);
    c.dataset.id = item.id;
    const img = document.createElement("img");
    img.loading = "lazy"; img.decoding = "async"; img.alt = "";
    img.src = "/crop/" + encodeURIComponent(item.id);
    c.append(img, line("badge", ""), line("why reason", why(item)),
      line("why title", [item.title, item.artist].filter(Boolean).join(" — ")), line("why tagline", ""));
    if (item.group_size > 1) {
      const edge = line("group-edge", "");
      edge.style.background = `hsl(${parseInt(item.group.slice(0, 6), 16) % 360} 70% 55%)`;
      c.append(edge);
      if (item.keeper) c.append(line("keeper", "keeper"));
    }
    c.title = item.reasons.map((r) => `${r.filter}: ${r.reason}`).join("\n") + attributeText(item, "\n") +
      (item.page_url ? `\n${item.page_url}` : "") + (item.group_size > 1 ? `\nduplicate group of ${item.group_size}` : "");
    c.addEventListener("click", (ev) => click(i, ev));
    paint(c, item);
    return c;
  }

  function paint(c, item) {
    c.classList.remove("accept", "reject", "skip");
    if (item.decision) c.classList.add(item.decision);
    c.dataset.decision = item.decision || "";
    c.querySelector(".badge").textContent = item.decision ? item.decision[0].toUpperCase() : "";
    const tagged = Object.entries(item.tag_proposals || {}).filter(([t]) => !item.tags.includes(t));
    c.querySelector(".tagline").textContent = item.tags.length ? "#" + item.tags.join(" #") :
      item.proposal ? `model: ${item.proposal} ${Math.round(100 * (item.proposal === "accept" ? item.p_accept : 1 - item.p_accept))}%` :
      tagged.length ? `model: #${tagged[0][0]} ${Math.round(100 * tagged[0][1])}%` : "";
    c.classList.toggle("selected", S.sel.has(item.id));
    c.classList.toggle("proposed", Boolean(item.proposal));
  }

  // "hair blue 62% · tag disney style": estimated values with their confidence, scraped ones as they came.
  function attributeText(item, lead) {
    const a = item.attributes || [];
    if (!a.length) return "";
    return lead + a.map((x) => x.origin === "estimated" ? `${x.name} ${x.value} ${Math.round(100 * x.confidence)}%`
      : `${x.name} ${x.value}`).join(" · ");
  }

  function details(item) {
    const el = $("details");
    el.replaceChildren();
    if (!item) return;
    const head = [item.title || "(no title)", item.artist && `by ${item.artist}`, item.source].filter(Boolean).join(" · ");
    const reasons = document.createElement("span");
    reasons.className = "reasons";
    reasons.textContent = " · " + item.reasons.map((r) =>
      `${r.filter} ${fmt(r.score)}/${fmt(r.threshold)}${r.passed ? "" : " ✗"}${r.doubtful ? " (doubtful)" : ""}`).join(", ") +
      (item.group_size > 1 ? ` · group of ${item.group_size}${item.keeper ? ", keeper" : `, distance ${item.distance}`}` : "") +
      (item.decision ? ` · ${item.decision} by ${item.by}` : "") + " ";
    const attrs = document.createElement("span");
    attrs.className = "attributes";
    attrs.textContent = attributeText(item, " · ") + " ";
    el.append(head, reasons, attrs);
    if (/^https?:\/\//.test(item.page_url)) {
      const a = document.createElement("a");
      a.href = item.page_url; a.target = "_blank"; a.rel = "noopener noreferrer"; a.textContent = "source page";
      el.append(a);
    }
  }

  function resize(step) {
    const now = SIZES.indexOf(S.size);
    S.size = SIZES[Math.max(0, Math.min(SIZES.length - 1, (now < 0 ? 1 : now) + step))];
    $("grid").className = `s${S.size}`;
    localStorage.setItem("headshot.size", String(S.size));
    if (S.items.length) setFocus(S.focus, false);
  }

  function cellOf(id) { const i = S.index.get(id); return i === undefined ? null : $("grid").children[i]; }

  function update(items) {
    for (const it of items) {
      const i = S.index.get(it.id);
      if (i === undefined) continue;
      S.items[i] = it;
      paint($("grid").children[i], it);
      if (i === S.focus) details(it);
    }
  }

  async function load(reset, snap) {
    if (S.loading) return S.loading;
    if (!reset && S.items.length >= S.total) return;
    const q = snap ? `snap=${snap}` : reset ? `view=${encodeURIComponent(S.view)}&arg=${encodeURIComponent(S.arg)}` : `snap=${S.snap}`;
    S.loading = (async () => {
      try {
        const data = await api("GET", `/api/items?${q}&offset=${reset ? 0 : S.items.length}&limit=${PAGE}`);
        if (reset) { S.items = []; S.index.clear(); S.sel.clear(); S.focus = 0; S.anchor = 0; $("grid").replaceChildren(); }
        S.snap = data.snap; S.total = data.total;
        const frag = document.createDocumentFragment();
        for (const it of data.items) {
          const i = S.items.length;
          S.items.push(it); S.index.set(it.id, i);
          frag.append(makeCell(it, i));
        }
        $("grid").append(frag);
        if (reset) setFocus(0, false);
        document.body.dataset.loaded = String(S.items.length);
        document.body.dataset.view = S.view;
        counter();
      } catch (e) { say(e.message, true); } finally { S.loading = null; }
    })();
    return S.loading;
  }

  function cols() {
    const t = getComputedStyle($("grid")).gridTemplateColumns;
    return Math.max(1, t && t !== "none" ? t.split(" ").length : 1);
  }

  function setFocus(i, extend) {
    if (!S.items.length) { counter(); return; }
    i = Math.max(0, Math.min(S.items.length - 1, i));
    const old = $("grid").children[S.focus];
    if (old) old.classList.remove("focus");
    S.focus = i;
    if (extend) {
      const [a, b] = S.anchor <= i ? [S.anchor, i] : [i, S.anchor];
      S.sel.clear();
      for (let k = a; k <= b; k++) S.sel.add(S.items[k].id);
      for (const c of $("grid").children) c.classList.toggle("selected", S.sel.has(c.dataset.id));
    } else S.anchor = i;
    const c = $("grid").children[i];
    c.classList.add("focus");
    details(S.items[i]);
    c.scrollIntoView({ block: "nearest" });
    if (S.items.length - i < PAGE / 2) load(false);
  }

  function click(i, ev) {
    if (ev.shiftKey) setFocus(i, true);
    else if (ev.ctrlKey || ev.metaKey) { toggleSel(S.items[i].id); setFocus(i, false); }
    else setFocus(i, false);
  }

  function toggleSel(id) {
    S.sel.has(id) ? S.sel.delete(id) : S.sel.add(id);
    const c = cellOf(id);
    if (c) c.classList.toggle("selected", S.sel.has(id));
  }

  function clearSel() {
    for (const id of S.sel) { const c = cellOf(id); if (c) c.classList.remove("selected"); }
    S.sel.clear();
  }

  function targets() { return S.sel.size ? [...S.sel] : S.items.length ? [S.items[S.focus].id] : []; }

  // Requests go out in key-press order, one at a time; the grid changes at once and is
  // corrected by the answer. Decisions and tags pressed while a request is out travel
  // together in the next one (each still its own batch and transaction on the server).
  // 507: the server's disk is full and it wrote nothing; the request was fine, so the key
  // presses stay pending (and painted) and go again, later and later, until there is room.
  const outbox = [];
  let inflight = false;
  let retryIn = 0;
  let backoff = 0;  // seconds
  const RETRY_STATUS = new Set([507]);
  const COMBINABLE = { "/api/decide": "decide", "/api/tag": "tag" };

  function send(path, body, optimistic, label) {
    outbox.push({ path, body, before: optimistic(), label });
    S.pending++; setBusy(); counter();
    pump();
  }

  async function pump() {
    if (inflight || retryIn || !outbox.length) return;
    inflight = true;
    const head = outbox[0];
    const take = [];
    while (outbox.length && take.length < 200 && (take.length === 0 ||
           (COMBINABLE[head.path] && COMBINABLE[outbox[0].path] && outbox[0].body.reviewer === head.body.reviewer))) {
      take.push(outbox.shift());
    }
    const combined = take.length > 1 || COMBINABLE[head.path];
    const path = combined ? "/api/batches" : head.path;
    const body = combined ? {
      reviewer: head.body.reviewer,
      ops: take.map((t) => ({ op: COMBINABLE[t.path], ids: t.body.ids, decision: t.body.decision, tag: t.body.tag, on: t.body.on })),
    } : head.body;
    let again = false;
    try {
      const data = await api("POST", path, body);
      update(data.items);
      S.counts = data.counts;
      const last = take[take.length - 1];
      if (last.label) say(last.label(data, take.length));
      S.sinceLearner += data.items.length;
      backoff = 0;
    } catch (e) {
      again = RETRY_STATUS.has(e.status);
      if (again) {
        outbox.unshift(...take);  // in key-press order, ahead of what was pressed since
        backoff = Math.min(30, backoff ? backoff * 2 : 2);
        const n = S.pending;
        say(`${e.message} · ${n} key press${n === 1 ? "" : "es"} kept, sent again in ${backoff} s`, true);
        retryIn = setTimeout(() => { retryIn = 0; pump(); }, backoff * 1000);
      } else {
        for (const t of take.slice().reverse()) update(t.before);
        say(`not saved: ${e.message}`, true);
      }
    } finally {
      if (!again) S.pending -= take.length;
      inflight = false; setBusy(); counter();
      if (S.sinceLearner >= 10 && !S.pending) { S.sinceLearner = 0; learner(); }
      pump();
    }
  }

  function snapshotOf(ids) { return ids.map((id) => S.index.get(id)).filter((i) => i !== undefined).map((i) => ({ ...S.items[i] })); }

  function decide(decision) {
    const ids = targets();
    if (!ids.length) return;
    send("/api/decide", { reviewer: reviewer(), ids, decision }, () => {
      const before = snapshotOf(ids);
      update(before.map((it) => ({ ...it, decision })));
      return before;
    }, (d, n) => n > 1 ? `saved ${n} key presses` : `${decision} × ${d.items.length}`);
    const last = Math.max(...ids.map((id) => S.index.get(id) ?? -1));
    clearSel();
    let next = last + 1;
    while (next < S.items.length && S.items[next].decision) next++;
    setFocus(next < S.items.length ? next : Math.min(last + 1, S.items.length - 1), false);
  }

  function toggleTag(key) {
    const name = S.tags[key];
    if (!name) { say(`key ${key} has no tag yet: name it in the bar above`, true); return; }
    const ids = targets();
    const on = !ids.every((id) => { const i = S.index.get(id); return i !== undefined && S.items[i].tags.includes(name); });
    send("/api/tag", { reviewer: reviewer(), ids, tag: name, on }, () => {
      const before = snapshotOf(ids);
      update(before.map((it) => ({ ...it, tags: on ? [...new Set([...it.tags, name])].sort() : it.tags.filter((t) => t !== name) })));
      return before;
    }, (d, n) => n > 1 ? `saved ${n} key presses` : `${on ? "tagged" : "untagged"} ${name} × ${d.items.length}`);
  }

  async function selectGroup() {
    const it = S.items[S.focus];
    if (!it || it.group_size < 2) { say("this crop has no near-duplicate"); return; }
    const data = await api("GET", `/api/group/${it.id}`);
    clearSel();
    for (const m of data.items) toggleSel(m.id);
    say(`selected the duplicate group: ${data.items.length} crops`);
  }

  function keepKeeper() {
    const it = S.items[S.focus];
    if (!it || it.group_size < 2) { say("this crop has no near-duplicate"); return; }
    send("/api/group-decide", { reviewer: reviewer(), crop_id: it.id }, () => [], (d) => `kept the keeper, rejected ${d.items.length - 1}`);
  }

  // "More like these": the selection (or the focused crop) as examples; every other crop is
  // ranked by how alike its embedding is, most alike first, as a view of its own.
  async function moreLikeThese() {
    const ids = targets();
    if (!ids.length) return;
    try {
      const data = await api("GET", `/api/similar?ids=${ids.map(encodeURIComponent).join(",")}&limit=1`);
      if (data.why) { say(data.why, true); return; }
      S.view = "similar"; document.body.dataset.similar = String(data.examples.length);
      await load(true, data.snap);
      say(`more like these ${data.examples.length}: ${data.total} crops, most alike first` +
          (data.pending ? ` (${data.pending} not embedded yet)` : "") + " · A accepts from the top down to the focused crop, t selects them");
    } catch (e) { say(e.message, true); }
  }

  async function tagProposals(name) {
    try {
      const data = await api("GET", `/api/tag-proposals?tag=${encodeURIComponent(name)}&limit=1`);
      if (!data.ready) { say(`#${name}: ${data.carried || 0} crops carry it; the learner proposes once ${data.needs || "a few"} do`); return; }
      S.view = "tag proposals";
      await load(true, data.snap);
      say(`#${name} proposed for ${data.total} crops, surest first · t selects from the top to the focused crop, then a tag key`);
    } catch (e) { say(e.message, true); }
  }

  function topToFocus() {
    clearSel();
    for (let k = 0; k <= S.focus && k < S.items.length; k++) S.sel.add(S.items[k].id);
    for (const c of $("grid").children) c.classList.toggle("selected", S.sel.has(c.dataset.id));
    say(`selected the top ${S.sel.size}`);
  }

  function undo() {
    send("/api/undo", { reviewer: reviewer() }, () => [], (d) => d.items.length ? `undone: ${d.items.length}` : "nothing to undo");
  }

  function confirmProposals() {
    const pool = S.sel.size ? [...S.sel] : S.items.map((it) => it.id);
    const ids = pool.filter((id) => { const i = S.index.get(id); return i !== undefined && S.items[i].proposal && !S.items[i].decision; });
    if (!ids.length) { say("no proposal to confirm here (the learner proposes after enough labels)"); return; }
    const proposals = Object.fromEntries(ids.map((id) => [id, S.items[S.index.get(id)].proposal]));
    send("/api/confirm", { reviewer: reviewer(), proposals }, () => {
      const before = snapshotOf(ids);
      update(before.map((it) => ({ ...it, decision: it.proposal })));
      return before;
    }, (d) => `confirmed ${d.items.length} proposals`);
  }

  async function learner() {
    try {
      const r = await api("GET", "/api/learner");
      S.learner = r;
      $("learner").textContent = r.ready
        ? `learner: agrees with you on ${r.agreement === null ? "?" : Math.round(100 * r.agreement) + "%"} of ` +
          `${r.agreement_n} labels (always-the-commoner: ${r.baseline === null ? "?" : Math.round(100 * r.baseline) + "%"})` +
          (r.proposing
            ? ` · ${r.proposals} proposals (proposals view; Enter confirms those in view)`
            : r.ordering
              ? " · no better than that yet: no proposals; the crops it is least sure of come first"
              : " · no better than that yet: no proposals, the queue keeps the filters' order")
        : r.off ? "learner: off (--no-learner)" : r.error ? `learner stopped: ${r.error}` : r.needs ? `learner: needs ${r.needs} more labels` : "learner: training…";
    } catch (e) { /* the learner is optional */ }
  }

  function onKey(ev) {
    const t = ev.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
    const k = ev.key;
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols(), ArrowUp: -cols() };
    if (k in moves) { setFocus(S.focus + moves[k], ev.shiftKey); }
    else if ((ev.ctrlKey || ev.metaKey) && k.toLowerCase() === "z") undo();
    else if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    else if (k === "A") { topToFocus(); decide("accept"); }
    else if (k === "t") topToFocus();
    else if (k === "m") moreLikeThese();
    else if (k.toLowerCase() in KEY) decide(KEY[k.toLowerCase()]);
    else if (k === "u") undo();
    else if (k === " ") { if (S.items.length) toggleSel(S.items[S.focus].id); }
    else if (k === "g") selectGroup();
    else if (k === "k") keepKeeper();
    else if (k === "Enter") confirmProposals();
    else if (k === "Escape") { clearSel(); say(""); }
    else if (k === "?") $("help").hidden = !$("help").hidden;
    else if (k === "-") resize(-1);
    else if (k === "+" || k === "=") resize(1);
    else if (/^[1-9]$/.test(k)) toggleTag(k);
    else return;
    ev.preventDefault();
  }

  function tagBar() {
    const bar = $("tags");
    bar.replaceChildren();
    for (let k = 1; k <= 9; k++) {
      const lab = document.createElement("label");
      const inp = document.createElement("input");
      inp.size = 10; inp.placeholder = "tag"; inp.value = S.tags[k] || ""; inp.dataset.key = String(k);
      inp.addEventListener("change", async () => {
        try {
          const r = await api("POST", "/api/tags", { key: k, name: inp.value.trim() || null });
          S.tags = r.tags; more.hidden = !S.tags[k]; argOptions(); say(`key ${k}: ${inp.value.trim() || "cleared"}`);
        } catch (e) { say(e.message, true); }
      });
      const more = document.createElement("button");
      more.type = "button"; more.textContent = "proposals"; more.title = "crops the learner would give this tag";
      more.hidden = !S.tags[k]; more.dataset.key = String(k);
      more.addEventListener("click", () => { if (S.tags[k]) tagProposals(S.tags[k]); });
      lab.append(`${k} `, inp, more);
      bar.append(lab);
    }
  }

  function argOptions() {
    const sel = $("arg");
    const names = S.view === "tag" ? Object.values(S.tags) : S.view === "attribute" ? S.attributes : S.filters;
    sel.hidden = !["reason", "score", "tag", "attribute"].includes(S.view);
    sel.replaceChildren(...(S.view === "reason" ? [""] : []).concat(names).map((n) => {
      const o = document.createElement("option"); o.value = n; o.textContent = n || "every filter"; return o;
    }));
    if (sel.hidden) S.arg = "";
    else if (!names.includes(S.arg) && !(S.view === "reason" && S.arg === "")) S.arg = names[0] || "";
    sel.value = S.arg;
  }

  async function start() {
    $("reviewer").value = localStorage.getItem("headshot.reviewer") || "reviewer";
    S.size = Number(localStorage.getItem("headshot.size")) || 80;
    resize(0);
    $("reviewer").addEventListener("change", () => localStorage.setItem("headshot.reviewer", reviewer()));
    $("help-button").addEventListener("click", () => { $("help").hidden = !$("help").hidden; });
    const meta = await api("GET", "/api/meta");
    S.views = meta.views; S.filters = meta.filters; S.tags = meta.tags; S.counts = meta.counts;
    S.attributes = meta.attributes || [];
    const params = new URLSearchParams(location.search);
    S.view = params.get("view") && params.get("view") in S.views ? params.get("view") : "queue";
    S.arg = params.get("arg") || "";
    for (const [name, what] of Object.entries(S.views)) {
      const o = document.createElement("option"); o.value = name; o.textContent = name; o.title = what;
      $("view").append(o);
    }
    $("view").value = S.view;
    $("view").addEventListener("change", () => { S.view = $("view").value; S.arg = ""; argOptions(); load(true); $("grid").focus(); });
    $("arg").addEventListener("change", () => { S.arg = $("arg").value; load(true); $("grid").focus(); });
    tagBar(); argOptions(); setBusy();
    document.addEventListener("keydown", onKey);
    // Closing the tab with key presses still unsaved (a full disk, a slow answer) would lose them.
    window.addEventListener("beforeunload", (ev) => { if (S.pending) { ev.preventDefault(); ev.returnValue = ""; } });
    new IntersectionObserver((es) => { if (es.some((e) => e.isIntersecting)) load(false); }, { rootMargin: "600px" })
      .observe($("sentinel"));
    await load(true);
    $("grid").focus();
    learner();
    setInterval(() => { if (!document.hidden) learner(); }, 3000);  // it trains in the background
    document.body.dataset.ready = "1";
  }

  start().catch((e) => say(e.message, true));
})();
