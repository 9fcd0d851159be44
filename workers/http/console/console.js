// The deltamem console: agents, one agent's timeline, versions, guard and held/rejected events.
// Talks to the v1 API with the tenant key kept in sessionStorage; every action asks first.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const KEY = "deltamem.key";
  const PAGE = 50;          // version table rows per page
  const WINDOW = 1000;      // versions the plot requests at once
  const BUCKETS = 200;      // plot buckets: at most 2 points each
  const EVENTS_PAGE = 50;   // held / rejected rows per request
  const MARKED = new Set(["rollback", "forget", "snapshot", "fork"]);
  const S = { agent: null, pages: [], before: null, selected: null, plotBefore: null,
    quarantined: false, after: { held: null, rejected: null } };

  class ApiError extends Error {
    constructor(status, body) {
      const e = (body && body.error) || {};
      super(e.message || `HTTP ${status}`);
      this.status = status; this.code = e.code || ""; this.field = e.field || "";
    }
  }

  async function api(method, path, body) {
    const key = sessionStorage.getItem(KEY);
    if (!key) throw new ApiError(401, { error: { code: "unauthorized", message: "no key" } });
    const init = { method, headers: { Authorization: "Bearer " + key } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    let data = null;
    try { data = await resp.json(); } catch (_) { data = null; }
    if (!resp.ok) throw new ApiError(resp.status, data);
    return data;
  }

  // An endpoint this server may not have yet: null when it answers 404 or 405 (no such
  // route or method) or 422 on `status` (a status this server does not list).
  async function optional(path) {
    try { return await api("GET", path); } catch (e) {
      if (e.status === 404 || e.status === 405 || (e.status === 422 && e.field === "status")) return null;
      throw e;
    }
  }

  function say(text, isError) {
    $("message").textContent = text;
    $("message").className = isError ? "error" : "";
  }

  function fail(e) {
    if (e.status === 401) { signOut(); say("The key was refused: enter a tenant API key.", true); return; }
    say(`Error${e.status ? " " + e.status : ""}${e.code ? " " + e.code : ""}: ${e.message}`, true);
  }

  function cell(text) { const td = document.createElement("td"); td.textContent = text ?? ""; return td; }
  function fill(tableId, rows) { $(tableId).tBodies[0].replaceChildren(...rows); }
  function fmt(x, digits) { return x === null || x === undefined ? "" : Number(x).toFixed(digits); }
  function when(iso) { return iso ? iso.replace("T", " ").slice(0, 19) : ""; }
  function base() { return "/v1/agents/" + encodeURIComponent(S.agent.id); }

  function confirmDialog(text) {
    return new Promise((resolve) => {
      const d = $("confirm");
      $("confirm-text").textContent = text;
      d.returnValue = "";
      d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
      d.showModal();
    });
  }

  // ---- key and routing -------------------------------------------------------------------
  function signOut() { sessionStorage.removeItem(KEY); showKeyState(); }
  function showKeyState() {
    const has = !!sessionStorage.getItem(KEY);
    $("key-form").hidden = has; $("sign-out").hidden = !has;
    if (!has) { $("agents-view").hidden = true; $("agent-view").hidden = true; }
  }

  async function route() {
    showKeyState();
    if (!sessionStorage.getItem(KEY)) return;
    const m = location.hash.match(/^#\/agents\/([^/]+)$/);
    try {
      if (m) await openAgent(decodeURIComponent(m[1])); else await showAgents();
    } catch (e) { fail(e); }
  }

  // ---- agents ----------------------------------------------------------------------------
  async function showAgents() {
    const { agents } = await api("GET", "/v1/agents");
    fill("agents", agents.map((a) => {
      const tr = document.createElement("tr");
      const link = document.createElement("a");
      link.href = "#/agents/" + encodeURIComponent(a.id);
      link.textContent = a.name;
      const name = cell(""); name.append(link);
      tr.append(name, cell(a.kind), cell(a.head_version), cell(a.events_received),
        cell(a.events_applied), cell(a.events_rejected), cell(a.events_held),
        cell(a.base ? `${a.base.agent_id} v${a.base.version}` : ""));
      return tr;
    }));
    $("agent-view").hidden = true; $("agents-view").hidden = false;
  }

  async function createAgent(ev) {
    ev.preventDefault();
    const body = { name: $("new-name").value, kind: $("new-kind").value,
      encoder: $("new-encoder").value };
    if (body.encoder === "none") body.dim = Number($("new-dim").value);
    try {
      const a = await api("POST", "/v1/agents", body);
      say(`Created agent ${a.name} (${a.id}).`);
      location.hash = "#/agents/" + encodeURIComponent(a.id);
    } catch (e) { fail(e); }
  }

  // ---- one agent -------------------------------------------------------------------------
  async function openAgent(id) {
    if (!S.agent || S.agent.id !== id) {
      Object.assign(S, { pages: [], before: null, selected: null, plotBefore: null });
    }
    S.agent = await api("GET", "/v1/agents/" + encodeURIComponent(id));
    const a = S.agent;
    $("agent-title").textContent = `${a.name} (${a.kind}, ${a.id})`;
    const parts = [`head v${a.head_version}`, `received ${a.events_received}`,
      `applied ${a.events_applied}`];
    if (a.events_rejected !== undefined) parts.push(`rejected ${a.events_rejected}`);
    if (a.events_held !== undefined) parts.push(`held ${a.events_held}`);
    if (a.memory && a.memory.rule) parts.push(`rule ${a.memory.rule}`);
    if (a.base) parts.push(`forked from ${a.base.agent_id} v${a.base.version}`);
    $("agent-summary").textContent = parts.join(" · ");
    $("agents-view").hidden = true; $("agent-view").hidden = false;
    S.after = { held: null, rejected: null };
    const guard = await optional(base() + "/guard");
    S.quarantined = !!(guard && guard.quarantined);
    await Promise.all([loadPlot(guard), loadVersions(), Promise.resolve(showGuard(guard)),
      loadEvents("held", false), loadEvents("rejected", false)]);
  }

  async function loadPlot(guard) {
    const q = `limit=${WINDOW}` + (S.plotBefore !== null ? `&before=${S.plotBefore}` : "");
    const { versions } = await api("GET", `${base()}/versions?${q}`);
    const win = guard && guard.policy && guard.policy.window;
    const quality = await optional(`${base()}/quality?${q}` + (win ? `&window=${win}` : ""));
    if (!versions.length) { $("plot").replaceChildren(); $("plot-caption").textContent = "no versions"; return; }
    const asc = versions.slice().reverse();
    const x0 = asc[0].version, x1 = asc[asc.length - 1].version;
    let points, yLabel, yMax;
    const qp = quality && quality.points ? quality.points.filter((p) => p.accuracy !== null) : [];
    if (qp.length) {
      points = qp.map((p) => ({ x: p.version, y: p.accuracy })).sort((a, b) => a.x - b.x);
      yLabel = `prequential accuracy over the last ${quality.window} events`; yMax = 1;
    } else if (asc.some((v) => v.accuracy !== undefined && v.accuracy !== null)) {
      points = asc.filter((v) => v.accuracy !== null && v.accuracy !== undefined)
        .map((v) => ({ x: v.version, y: v.accuracy }));
      yLabel = "running prequential accuracy"; yMax = 1;
    } else {
      points = asc.map((v) => ({ x: v.version, y: v.events }));
      yLabel = "events per version (no prequential quality for these versions)"; yMax = undefined;
    }
    const markers = asc.filter((v) => MARKED.has(v.kind)).map((v) => ({ x: v.version, kind: v.kind,
      label: `v${v.version} ${v.kind}` + (v.state_of !== undefined ? ` (state of v${v.state_of})` : "") }));
    for (const v of asc) {  // a scheduled snapshot kept beside a version (where the API shows it)
      if ((v.snapshot || v.has_snapshot) && v.kind !== "snapshot") {
        markers.push({ x: v.version, kind: "snapshot", label: `v${v.version} snapshot` });
      }
    }
    const all = await api("GET", "/v1/agents");
    for (const f of all.agents) {
      if (f.base && f.base.agent_id === S.agent.id && f.base.version >= x0 && f.base.version <= x1) {
        markers.push({ x: f.base.version, kind: "fork", label: `fork ${f.name} at v${f.base.version}` });
      }
    }
    for (const g of (guard && guard.actions) || []) {
      if (g.version !== null && g.version >= x0 && g.version <= x1) {
        markers.push({ x: g.version, kind: "guard", label: `guard ${g.action} v${g.version}: ${g.reason}` });
      }
    }
    const P = window.DeltamemPlot;
    P.render($("plot"), { points: P.downsample(points, BUCKETS), yLabel, yMax },
      P.thinMarkers(markers, x0, x1, BUCKETS), x0, x1);
    $("plot-caption").textContent = `${yLabel}; versions ${x0}–${x1} of 0–${S.agent.head_version}`;
    $("plot-older").disabled = x0 === 0;
    $("plot-newer").disabled = S.plotBefore === null;
    $("plot-older").dataset.to = x0; $("plot-newer").dataset.to = x1 + 1 + WINDOW;
  }

  function movePlot(to) {
    S.plotBefore = to === null || to > S.agent.head_version ? null : to;
    optional(base() + "/guard").then(loadPlot).catch(fail);
  }

  async function loadVersions() {
    const q = `limit=${PAGE}` + (S.before !== null ? `&before=${S.before}` : "");
    const { versions } = await api("GET", `${base()}/versions?${q}`);
    fill("versions", versions.map((v) => {
      const tr = document.createElement("tr");
      tr.dataset.version = v.version;
      const pick = document.createElement("input");
      Object.assign(pick, { type: "radio", name: "pick", value: v.version, checked: v.version === S.selected });
      pick.setAttribute("aria-label", "select version " + v.version);
      pick.addEventListener("change", () => { S.selected = v.version; $("rollback").disabled = false; });
      const c = cell(""); c.append(pick);
      tr.append(c, cell(v.version), cell(v.kind), cell(v.parent), cell(v.state_of), cell(v.events),
        cell(fmt(v.accuracy, 3)), cell(when(v.created_at)), cell((v.checksum || "").slice(0, 12)));
      return tr;
    }));
    const last = versions.length ? versions[versions.length - 1].version : 0;
    $("versions-older").disabled = versions.length < PAGE || last === 0;
    $("versions-older").dataset.to = last;
    $("versions-newer").disabled = S.pages.length === 0;
    $("versions-page").textContent = versions.length
      ? `v${versions[0].version}–v${last}` : "no versions";
    $("rollback").disabled = S.selected === null;
  }

  function showGuard(guard) {
    if (guard === null) {
      $("guard-summary").textContent = "This server has no guard endpoint.";
      fill("guard-actions", []); return;
    }
    const p = guard.policy;
    $("guard-summary").textContent = (p ? `policy: ${p.action} when accuracy over ${p.window} ` +
      `events drops by more than ${p.drop}` : "no guard policy") +
      (guard.quarantined ? " · QUARANTINED: new events are held" : "");
    const actions = (guard.actions || []).slice(-PAGE).reverse();
    fill("guard-actions", actions.map((g) => {
      const tr = document.createElement("tr");
      tr.append(cell(when(g.at)), cell(g.action), cell(g.version), cell(g.reason));
      return tr;
    }));
  }

  async function loadEvents(status, more) {
    const after = more ? S.after[status] : null;
    const q = `status=${status}&limit=${EVENTS_PAGE}` + (after !== null ? `&after_seq=${after}` : "");
    let out = await optional(`${base()}/events?${q}`);
    if (out === null && status === "held" && S.quarantined) {  // a server without `held`:
      out = await optional(`${base()}/events?${q.replace("held", "pending")}`);  // = pending
    }
    const rows = out === null ? [] : out.events.map((e) => {
      const tr = document.createElement("tr");
      if (status === "held") {
        const box = document.createElement("input");
        Object.assign(box, { type: "checkbox", value: e.id });
        box.setAttribute("aria-label", "select event " + e.id);
        const c = cell(""); c.append(box); tr.append(c);
      }
      tr.append(cell(e.seq), cell(e.id), cell(when(e.received_at)), cell(e.reason));
      return tr;
    });
    const body = $(status).tBodies[0];
    if (more) body.append(...rows); else body.replaceChildren(...rows);
    const span = status === "held" ? 5 : 4;
    if (out === null) {
      body.replaceChildren(note(span, status === "held" && S.agent.events_held === 0
        ? "none" : "not available on this server"));
    } else if (!body.rows.length) body.replaceChildren(note(span, "none"));
    S.after[status] = out ? out.next_after_seq : null;
    $(status + "-more").disabled = S.after[status] === null;
  }

  function note(span, text) {
    const tr = document.createElement("tr"); const td = cell(text); td.colSpan = span;
    tr.append(td); return tr;
  }

  // ---- actions (each asks first) ---------------------------------------------------------
  async function act(question, method, path, body, done) {
    if (!(await confirmDialog(question))) { say("Cancelled."); return; }
    try {
      const out = await api(method, base() + path, body);
      say(done(out));
      S.pages = []; S.before = null; S.selected = null;
      await openAgent(S.agent.id);
    } catch (e) { fail(e); }
  }

  function heldChecked() {
    return Array.from($("held").querySelectorAll("input[type=checkbox]:checked"), (b) => b.value);
  }

  function rollback() {
    const v = S.selected;
    act(`Roll back ${S.agent.name} to version ${v}? This commits a new version whose state ` +
      `equals version ${v}'s; the versions after it stay readable.`, "POST", "/rollback",
    { version: v }, (o) => `Rolled back: new version ${o.version} has the state of version ${o.state_of}.`);
  }

  function releaseOrForget(kind, all) {
    const ids = all ? null : heldChecked();
    if (ids !== null && !ids.length) { say("Select held events first.", true); return; }
    const what = all ? "all held events" : `${ids.length} held event(s)`;
    if (kind === "release") {
      act(`Release ${what} of ${S.agent.name}? They will be learned in their original order.`,
        "POST", "/release", all ? {} : { event_ids: ids },
        (o) => `Released ${o.released} event(s)` + (o.version !== undefined ? `; head v${o.version}.` : "."));
    } else {
      act(`Forget ${what} of ${S.agent.name}? Their payloads are erased and the memory is ` +
        `rebuilt without them as a new version.`, "POST", "/forget", { event_ids: ids },
      (o) => `Forgot ${o.events_removed} event(s): new version ${o.version}.`);
    }
  }

  // ---- wiring ----------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", () => {
    $("key-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(KEY, $("key").value.trim());
      $("key").value = ""; say("");
      route();
    });
    $("sign-out").addEventListener("click", () => { signOut(); say("Key forgotten."); });
    $("create-form").addEventListener("submit", createAgent);
    $("refresh").addEventListener("click", () => route());
    $("plot-older").addEventListener("click", () => movePlot(Number($("plot-older").dataset.to)));
    $("plot-newer").addEventListener("click", () => movePlot(Number($("plot-newer").dataset.to)));
    $("plot-latest").addEventListener("click", () => movePlot(null));
    $("versions-older").addEventListener("click", () => {
      S.pages.push(S.before); S.before = Number($("versions-older").dataset.to);
      loadVersions().catch(fail);
    });
    $("versions-newer").addEventListener("click", () => {
      S.before = S.pages.pop() ?? null; loadVersions().catch(fail);
    });
    $("rollback").addEventListener("click", rollback);
    $("held-more").addEventListener("click", () => loadEvents("held", true).catch(fail));
    $("rejected-more").addEventListener("click", () => loadEvents("rejected", true).catch(fail));
    $("release-selected").addEventListener("click", () => releaseOrForget("release", false));
    $("release-all").addEventListener("click", () => releaseOrForget("release", true));
    $("forget-selected").addEventListener("click", () => releaseOrForget("forget", false));
    window.addEventListener("hashchange", route);
    route();
  });
})();
