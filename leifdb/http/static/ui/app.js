/* LeifDB web UI. No framework: the DOM, fetch and EventSource against the node's own API.
 *
 * Keys: GET /db?prefix=&start_after=&limit= a page at a time, kept current by a watch on
 * the prefix (GET /watch/{prefix}?prefix=true from the page's revision + 1).
 * Editor: GET /db/{key}; every write carries the revision it was based on (If-Match, or
 * If-None-Match: * to create), so a change made meanwhile is a 412 shown to the user,
 * never overwritten silently. A watch on the open key shows others' changes live.
 * Cluster: GET /cluster/members, then each member's GET /health (cross-origin; CORS).
 * Leases: GET /lease, their remaining time counted down between polls.
 */
"use strict";

(() => {
  const CLUSTER_EVERY_MS = 2000;
  const LEASES_EVERY_MS = 3000;
  const TICK_MS = 200;
  const HEALTH_TIMEOUT_MS = 1500;
  const REWATCH_MS = 2000;
  const PREVIEW_CHARS = 80;

  const $ = (id) => document.getElementById(id);

  /** An element with properties (className, textContent, title, ...) and children. */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    for (const child of children) {
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function show(id, text) {
    const node = $(id);
    node.textContent = text || "";
    node.hidden = !text;
  }

  // -- the API ----------------------------------------------------------------------

  const dbPath = (key) => "/db/" + encodeURIComponent(key);
  const watchPath = (key, params) =>
    "/watch/" + encodeURIComponent(key) + "?" + new URLSearchParams(params);
  const quoted = (revision) => '"' + revision + '"';

  /** One request; never throws. status 0: no answer (network error or timeout). */
  async function call(method, url, options = {}) {
    const headers = Object.assign({ Accept: "application/json" }, options.headers);
    const init = { method, headers, cache: "no-store", signal: options.signal };
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    let response, text;
    try {
      response = await fetch(url, init);
      text = await response.text();
    } catch (e) {
      return { status: 0, data: { error: "no answer from the node (" + e.message + ")" } };
    }
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (e) {
        data = { error: text.slice(0, 200) };
      }
    }
    const revision = response.headers.get("X-LeifDB-Revision");
    return { status: response.status, data, revision: revision === null ? null : Number(revision) };
  }

  function errorText(reply, writing) {
    const message = (reply.data && reply.data.error) || "HTTP " + reply.status;
    if (reply.status === 0) {
      return writing
        ? message + ": the write may or may not have been applied; reload the key before retrying"
        : message;
    }
    return reply.status + ": " + message;
  }

  /** Keys are ordered by code point (as their UTF-8 bytes are); JS compares UTF-16 units. */
  function compareKeys(a, b) {
    const n = Math.min(a.length, b.length);
    for (let i = 0; i < n; i++) {
      const x = a.codePointAt(i);
      const y = b.codePointAt(i);
      if (x !== y) return x < y ? -1 : 1;
      if (x > 0xffff) i++;
    }
    return a.length - b.length;
  }

  function preview(value) {
    const line = value.replace(/\r?\n/g, " \u21b5 ");
    return line.length > PREVIEW_CHARS ? line.slice(0, PREVIEW_CHARS) + "\u2026" : line;
  }

  function closeSource(source) {
    if (source) source.close();
  }

  function setLive(state) {
    const badge = $("live");
    badge.textContent = state;
    badge.className = "badge" + (state === "live" ? " live" : state === "offline" ? " down" : "");
  }

  function saveHash() {
    const params = new URLSearchParams();
    if (list.prefix) params.set("prefix", list.prefix);
    if (editor.key !== null) params.set("key", editor.key);
    const hash = params.toString();
    history.replaceState(null, "", hash ? "#" + hash : location.pathname);
  }

  // -- keys: one page under a prefix, kept current by a watch -------------------------

  const list = {
    prefix: "",
    limit: 50,
    starts: [null], // start_after of each page visited; the last is this page's
    items: [],
    more: false,
    source: null,
    retry: null,
    generation: 0,
  };

  async function loadPage() {
    const generation = ++list.generation;
    clearTimeout(list.retry);
    const start = list.starts[list.starts.length - 1];
    const params = new URLSearchParams({ prefix: list.prefix, limit: String(list.limit) });
    if (start !== null) params.set("start_after", start);
    const reply = await call("GET", "/db?" + params);
    if (generation !== list.generation) return;
    if (reply.status !== 200) {
      show("keys-error", "Cannot list keys: " + errorText(reply));
      list.retry = setTimeout(loadPage, REWATCH_MS);
      return;
    }
    show("keys-error", "");
    list.items = reply.data.items.map(({ key, value, revision }) => ({ key, value, revision }));
    list.more = reply.data.more;
    renderKeys();
    watchList(reply.revision);
  }

  function watchList(revision) {
    closeSource(list.source);
    const params = { prefix: "true" };
    if (revision) params.start_revision = String(revision + 1);
    const source = new EventSource(watchPath(list.prefix, params));
    list.source = source;
    source.onopen = () => setLive("live");
    source.onmessage = (message) => {
      if (source === list.source) applyListEvent(JSON.parse(message.data));
    };
    const restart = () => {
      source.close();
      if (source === list.source) {
        setLive("offline");
        list.retry = setTimeout(loadPage, REWATCH_MS);
      }
    };
    // The stream left the history the node keeps, or fell behind: read again, then watch.
    source.addEventListener("compacted", restart);
    source.addEventListener("overflow", restart);
    source.onerror = () => {
      // CONNECTING: the browser resumes by itself (Last-Event-ID); CLOSED: it gave up.
      if (source.readyState === EventSource.CLOSED) restart();
      else if (source === list.source) setLive("reconnecting");
    };
  }

  function inPage(key) {
    const start = list.starts[list.starts.length - 1];
    if (start !== null && compareKeys(key, start) <= 0) return false;
    const last = list.items[list.items.length - 1];
    return !(list.more && last && compareKeys(key, last.key) > 0);
  }

  function applyListEvent(event) {
    const i = list.items.findIndex((item) => item.key === event.key);
    if (event.type === "delete") {
      if (i >= 0) {
        list.items.splice(i, 1);
        renderKeys();
      }
      return;
    }
    if (i >= 0) {
      Object.assign(list.items[i], { value: event.value, revision: event.revision });
    } else if (inPage(event.key)) {
      list.items.push({ key: event.key, value: event.value, revision: event.revision });
      list.items.sort((a, b) => compareKeys(a.key, b.key));
      if (list.items.length > list.limit) {
        list.items.pop();
        list.more = true;
      }
    } else {
      return;
    }
    renderKeys(event.key);
  }

  function renderKeys(flashKey) {
    const rows = list.items.map((item) => {
      const row = el(
        "tr",
        { tabIndex: 0 },
        el("td", { className: "key", textContent: item.key, title: item.key }),
        el("td", { className: "value", textContent: preview(item.value), title: item.value.slice(0, 2000) }),
        el("td", { className: "num", textContent: item.revision })
      );
      row.dataset.key = item.key;
      if (item.key === editor.key) row.classList.add("selected");
      if (item.key === flashKey) row.classList.add("flash");
      row.addEventListener("click", () => openKey(item.key));
      row.addEventListener("keydown", (e) => {
        if (e.key === "Enter") openKey(item.key);
      });
      return row;
    });
    $("keys").tBodies[0].replaceChildren(...rows);
    $("keys-empty").hidden = list.items.length > 0;
    const page = list.starts.length;
    $("page-info").textContent = "Page " + page + " \u00b7 " + list.items.length + " keys" + (list.more ? " (more)" : "");
    $("prev-page").disabled = page === 1;
    $("next-page").disabled = !list.more;
  }

  function listFrom(prefix) {
    list.prefix = prefix;
    list.limit = Number($("limit").value);
    list.starts = [null];
    saveHash();
    loadPage();
  }

  // -- the editor: one key, written with its revision as the condition ----------------

  const editor = {
    key: null, // the open key; null while creating one or with none open
    creating: false,
    item: null, // the key as last read or written (null: absent)
    dirty: false,
    conflict: false,
    saving: false,
    pending: [], // watch events that arrived while a write was in flight
    source: null,
    seen: 0, // the last revision the key's watch delivered or the read reflected
    retry: null,
    armed: null, // the timer of a Delete waiting for its confirmation
    noticeTimer: null,
  };

  function status(text, kind) {
    const node = $("editor-status");
    node.textContent = text || "";
    node.className = kind || "";
  }

  function notice(text, transient) {
    clearTimeout(editor.noticeTimer);
    show("remote", text);
    if (text && transient) editor.noticeTimer = setTimeout(() => show("remote", ""), 4000);
  }

  function hideConflict() {
    editor.conflict = false;
    $("conflict").hidden = true;
  }

  function renderMeta() {
    const item = editor.item;
    let text;
    if (editor.creating) {
      text = "New key: written only if no key of that name exists.";
    } else if (!item) {
      text = "This key does not exist now. Save creates it.";
    } else {
      text = "Revision " + item.revision + " \u00b7 created at " + item.create_revision +
        " \u00b7 " + (item.lease ? "lease " + item.lease + " (kept when saving)" : "no lease");
    }
    $("meta").textContent = text;
    $("delete").disabled = editor.creating || !item;
    $("reload").disabled = editor.creating;
    $("key").readOnly = !editor.creating;
  }

  function markSelected() {
    for (const row of $("keys").tBodies[0].rows) {
      row.classList.toggle("selected", row.dataset.key === editor.key);
    }
  }

  function openEditor() {
    $("editor-empty").hidden = true;
    $("editor-form").hidden = false;
    disarmDelete();
    hideConflict();
    notice("");
    status("");
  }

  function closeEditor(message) {
    closeSource(editor.source);
    clearTimeout(editor.retry);
    editor.source = null;
    editor.key = null;
    editor.item = null;
    editor.creating = false;
    $("editor-form").hidden = true;
    $("editor-empty").hidden = false;
    $("editor-empty").textContent = message || "Select a key, or create a new one.";
    markSelected();
    saveHash();
  }

  function showItem(key, item, revision) {
    openEditor();
    editor.key = key;
    editor.creating = false;
    editor.item = item;
    editor.dirty = false;
    editor.pending = [];
    editor.seen = revision || (item ? item.revision : 0);
    $("key").value = key;
    $("value").value = item ? item.value : "";
    renderMeta();
    markSelected();
    saveHash();
    watchKey(key);
  }

  async function openKey(key) {
    const reply = await call("GET", dbPath(key));
    if (reply.status === 200) {
      showItem(key, reply.data, reply.revision);
    } else if (reply.status === 404) {
      showItem(key, null, reply.revision);
      status("No key named " + JSON.stringify(key) + ".", "error");
    } else {
      openEditor();
      status("Cannot read the key: " + errorText(reply), "error");
    }
  }

  function newKey() {
    closeSource(editor.source);
    editor.source = null;
    openEditor();
    editor.key = null;
    editor.creating = true;
    editor.item = null;
    editor.dirty = false;
    $("key").value = list.prefix;
    $("value").value = "";
    renderMeta();
    markSelected();
    $("key").focus();
  }

  function watchKey(key) {
    closeSource(editor.source);
    clearTimeout(editor.retry);
    const params = editor.seen ? { start_revision: String(editor.seen + 1) } : {};
    const source = new EventSource(watchPath(key, params));
    editor.source = source;
    source.onmessage = (message) => {
      if (source !== editor.source) return;
      const event = JSON.parse(message.data);
      editor.seen = Math.max(editor.seen, event.revision);
      if (editor.saving) editor.pending.push(event);
      else applyKeyEvent(event);
    };
    const restart = () => {
      source.close();
      if (source === editor.source) editor.retry = setTimeout(() => watchKey(key), REWATCH_MS);
    };
    source.addEventListener("compacted", () => {
      editor.seen = 0; // resume from now; a change missed meanwhile still fails the write
      restart();
    });
    source.addEventListener("overflow", () => {
      editor.seen = 0;
      restart();
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) restart();
    };
  }

  /** A change of the open key: shown at once unless the user is editing it. */
  function applyKeyEvent(event) {
    if (event.key !== editor.key) return;
    const item = editor.item;
    if (item && event.revision <= item.revision) return; // already shown (our own write)
    const at = " at revision " + event.revision;
    if (editor.dirty || editor.conflict) {
      const base = item ? "revision " + item.revision : "the key being absent";
      notice(
        (event.type === "delete" ? "Another client deleted this key" : "Another client changed this key") +
          at + ". Your edit is based on " + base + ": saving it will be refused as a conflict."
      );
      return;
    }
    if (event.type === "delete") {
      editor.item = null;
      $("value").value = "";
      renderMeta();
      status("");
      notice("Deleted by another client" + at + ".", false);
      return;
    }
    editor.item = Object.assign({}, item || { create_revision: event.revision, lease: 0 }, {
      key: event.key,
      value: event.value,
      revision: event.revision,
    });
    $("value").value = event.value;
    renderMeta();
    status("");
    notice("Updated by another client" + at + ".", true);
    refreshMeta(event.key, event.revision);
  }

  /** Lease and creation revision are not in watch events: read them from this node. */
  async function refreshMeta(key, revision) {
    const reply = await call("GET", dbPath(key) + "?consistency=stale");
    const item = editor.item;
    if (reply.status === 200 && key === editor.key && item && reply.data.revision === revision &&
        item.revision === revision) {
      editor.item = reply.data;
      renderMeta();
    }
  }

  function conditionHeaders(condition) {
    return condition === null ? { "If-None-Match": "*" } : { "If-Match": quoted(condition) };
  }

  /** Write the value; ``condition`` is the revision it is based on, null to create. */
  async function save(condition) {
    const creating = condition === null;
    const key = editor.creating ? $("key").value : editor.key;
    if (!key) {
      status("The key must not be empty.", "error");
      return;
    }
    const value = $("value").value;
    const body = { value };
    const lease = editor.item && editor.item.lease;
    if (lease) body.lease = lease; // a put without it would detach the key from its lease
    disarmDelete();
    editor.saving = true;
    status("Saving\u2026");
    const reply = await call("PUT", dbPath(key), { body, headers: conditionHeaders(condition) });
    editor.saving = false;
    if (reply.status === 200) {
      const old = editor.item;
      editor.item = {
        key,
        value,
        revision: reply.data.revision,
        create_revision: old && condition !== null ? old.create_revision : reply.data.revision,
        lease: reply.data.lease,
      };
      editor.dirty = false;
      editor.creating = false;
      hideConflict();
      notice("");
      status("Saved at revision " + reply.data.revision + ".", "ok");
      renderMeta();
      if (editor.key !== key) {
        editor.key = key;
        editor.seen = reply.data.revision;
        markSelected();
        saveHash();
        watchKey(key);
      }
    } else if (reply.status === 412) {
      showConflict(key, condition, reply.data, creating);
    } else {
      status("Not saved: " + errorText(reply, true), "error");
    }
    const pending = editor.pending;
    editor.pending = [];
    pending.forEach(applyKeyEvent);
  }

  async function remove() {
    if (!editor.armed) {
      $("delete").textContent = "Confirm delete";
      $("delete").classList.add("armed");
      editor.armed = setTimeout(disarmDelete, 4000);
      return;
    }
    disarmDelete();
    const key = editor.key;
    const revision = editor.item.revision;
    status("Deleting\u2026");
    const reply = await call("DELETE", dbPath(key), { headers: conditionHeaders(revision) });
    if (reply.status === 200) {
      closeEditor("Deleted " + JSON.stringify(key) + " at revision " + reply.data.revision + ".");
    } else if (reply.status === 412) {
      showConflict(key, revision, reply.data, false);
    } else {
      status("Not deleted: " + errorText(reply, true), "error");
    }
  }

  function disarmDelete() {
    clearTimeout(editor.armed);
    editor.armed = null;
    $("delete").textContent = "Delete";
    $("delete").classList.remove("armed");
  }

  /** A 412: the key is not as the write expected. Show how it is; write nothing. */
  function showConflict(key, condition, current, creating) {
    editor.conflict = true;
    notice("");
    status("");
    const exists = current.revision !== null && current.revision !== undefined;
    if (!exists && !creating) {
      editor.item = null; // what is known now: the key is absent
      renderMeta();
    }
    let text;
    if (creating) {
      text = "A key named " + JSON.stringify(key) + " already exists (revision " + current.revision + ").";
    } else if (!exists) {
      text = JSON.stringify(key) + " was deleted since you read it at revision " + condition + ".";
    } else {
      text = JSON.stringify(key) + " changed since you read it at revision " + condition +
        ": it is now at revision " + current.revision + " with this value:";
    }
    $("conflict-title").textContent = "Conflict: nothing was written";
    $("conflict-text").textContent = text + " Your text is still in the editor.";
    $("conflict-value").textContent = exists ? current.value : "";
    $("conflict-value").hidden = !exists;
    $("conflict-overwrite").textContent = exists ? "Write mine over theirs" : "Create it again with mine";
    $("conflict-overwrite").onclick = () => save(exists ? current.revision : null);
    $("conflict-load").onclick = () => openKey(key);
    $("conflict").hidden = false;
  }

  // -- cluster: the members and each one's health ------------------------------------

  let clusterBusy = false;

  function memberBase(member, self) {
    if (member.id === self) return location.origin;
    const address = member.http_address;
    if (!address) return null;
    return /^https?:\/\//.test(address) ? address.replace(/\/+$/, "") : location.protocol + "//" + address;
  }

  /** A GET to another node, given up after a short while (it may be down). */
  async function callWithin(url) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), HEALTH_TIMEOUT_MS);
    try {
      return await call("GET", url, { signal: controller.signal });
    } finally {
      clearTimeout(timer);
    }
  }

  async function health(base) {
    if (!base) return null;
    const reply = await callWithin(base + "/health");
    return reply.status === 200 || reply.status === 503 ? reply.data : null;
  }

  /** A follower may not know every member's HTTP address; the leader does. */
  async function fillAddresses(doc) {
    const leader = doc.members.find((m) => m.is_leader);
    if (!leader || leader.id === doc.node || doc.members.every((m) => m.http_address)) return;
    const base = memberBase(leader, doc.node);
    if (!base) return;
    const reply = await callWithin(base + "/cluster/members");
    if (reply.status !== 200) return;
    for (const member of doc.members) {
      const known = reply.data.members.find((m) => m.id === member.id);
      if (!member.http_address && known) member.http_address = known.http_address;
    }
  }

  async function refreshCluster() {
    if (clusterBusy || document.hidden) return;
    clusterBusy = true;
    try {
      const reply = await call("GET", "/cluster/members");
      if (reply.status !== 200) {
        show("cluster-error", "Cannot list the members: " + errorText(reply));
        return;
      }
      show("cluster-error", "");
      const doc = reply.data;
      await fillAddresses(doc);
      const bases = doc.members.map((m) => memberBase(m, doc.node));
      const states = await Promise.all(bases.map(health));
      renderCluster(doc, bases, states);
    } finally {
      clusterBusy = false;
    }
  }

  function renderCluster(doc, bases, states) {
    const leaderState = states.find((s) => s && s.role === "leader");
    const commits = states.filter(Boolean).map((s) => s.commit_index);
    const leaderCommit = leaderState ? leaderState.commit_index : Math.max(0, ...commits);
    const dash = "\u2014";
    const rows = doc.members.map((member, i) => {
      const s = states[i];
      const address = bases[i]
        ? el("a", { href: bases[i] + "/ui/", textContent: member.http_address || bases[i] })
        : dash;
      const healthCell = !s
        ? el("td", { className: "unhealthy", textContent: bases[i] ? "no answer" : "no HTTP address" })
        : el("td", { className: s.healthy ? "healthy" : "unhealthy", textContent: s.healthy ? "healthy" : s.reason || "unhealthy" });
      const row = el(
        "tr",
        {},
        el("td", { textContent: member.id + (member.id === doc.node ? " (this node)" : "") }),
        el("td", {}, address),
        el("td", { textContent: member.role }),
        el("td", { className: "role", textContent: s ? s.role : dash }),
        el("td", { className: "num", textContent: s ? s.term : dash }),
        el("td", { textContent: s && s.leader ? s.leader : dash }),
        el("td", { className: "num", textContent: s ? s.commit_index : dash }),
        el("td", { className: "num", textContent: s ? s.applied_index : dash }),
        el("td", { className: "num lag", textContent: s ? Math.max(0, leaderCommit - s.applied_index) : dash }),
        healthCell
      );
      row.dataset.member = member.id;
      if ((s && s.role === "leader") || member.is_leader) row.classList.add("leader");
      return row;
    });
    $("members").tBodies[0].replaceChildren(...rows);
    const leader = leaderState ? leaderState.node : doc.leader;
    $("cluster-info").textContent = "cluster " + doc.cluster_id + " \u00b7 leader " + (leader || "none") +
      " \u00b7 config index " + doc.config_index;
    const self = states[doc.members.findIndex((m) => m.id === doc.node)];
    $("node-info").textContent = self
      ? "node " + self.node + " \u00b7 " + self.role + " \u00b7 term " + self.term + " \u00b7 v" + self.version
      : "node " + doc.node;
  }

  // -- leases: polled, their remaining time counted down in between -------------------

  const leases = { items: [], fetchedAt: 0, open: new Map(), busy: false };

  async function refreshLeases() {
    if (leases.busy || document.hidden) return;
    leases.busy = true;
    try {
      const reply = await call("GET", "/lease");
      if (reply.status !== 200) {
        show("leases-error", "Cannot list the leases: " + errorText(reply));
        return;
      }
      show("leases-error", "");
      leases.items = reply.data.leases;
      leases.fetchedAt = performance.now();
      const ids = new Set(leases.items.map((lease) => lease.id));
      for (const id of [...leases.open.keys()]) {
        if (!ids.has(id)) leases.open.delete(id);
      }
      await Promise.all([...leases.open.keys()].map(loadLeaseKeys));
      renderLeases();
    } finally {
      leases.busy = false;
    }
  }

  async function loadLeaseKeys(id) {
    const reply = await call("GET", "/lease/" + id);
    leases.open.set(id, reply.status === 200 ? reply.data.keys : null);
  }

  async function toggleLeaseKeys(id) {
    if (leases.open.has(id)) leases.open.delete(id);
    else await loadLeaseKeys(id);
    renderLeases();
  }

  function renderLeases() {
    const rows = leases.items.map((lease) => {
      const bar = el("span");
      const ttl = el("div", { className: "ttl" }, el("span", { className: "secs" }), el("div", { className: "bar" }, bar));
      const keysCell = el("td", { className: "lease-keys" });
      const keys = leases.open.get(lease.id);
      if (keys === undefined) {
        keysCell.append(el("button", { type: "button", textContent: "show", onclick: () => toggleLeaseKeys(lease.id) }));
      } else {
        for (const key of keys || []) {
          keysCell.append(el("a", { href: "#", textContent: key, onclick: (e) => { e.preventDefault(); openKey(key); } }));
        }
        if (keys && !keys.length) keysCell.append(el("span", { className: "muted", textContent: "none " }));
        keysCell.append(el("button", { type: "button", textContent: "hide", onclick: () => toggleLeaseKeys(lease.id) }));
      }
      const row = el(
        "tr",
        {},
        el("td", { className: "num", textContent: lease.id }),
        el("td", { className: "num", textContent: lease.ttl + " s" }),
        el("td", {}, ttl),
        keysCell
      );
      row.dataset.lease = lease.id;
      return row;
    });
    $("leases").tBodies[0].replaceChildren(...rows);
    $("leases-empty").hidden = leases.items.length > 0;
    $("leases-info").textContent = leases.items.length + " lease" + (leases.items.length === 1 ? "" : "s");
    tick();
  }

  function tick() {
    const elapsed = (performance.now() - leases.fetchedAt) / 1000;
    const rows = $("leases").tBodies[0].rows;
    leases.items.forEach((lease, i) => {
      const row = rows[i];
      if (!row) return;
      const left = Math.max(0, lease.remaining - elapsed);
      const ttl = row.querySelector(".ttl");
      ttl.querySelector(".secs").textContent = left > 0 ? left.toFixed(1) + " s" : "expiring";
      ttl.querySelector(".bar span").style.width = Math.min(100, (100 * left) / lease.ttl) + "%";
      ttl.classList.toggle("low", left < Math.min(5, lease.ttl / 4));
    });
  }

  // -- wiring ------------------------------------------------------------------------

  function init() {
    const hash = new URLSearchParams(location.hash.slice(1));
    $("prefix").value = hash.get("prefix") || "";
    $("prefix-form").addEventListener("submit", (e) => {
      e.preventDefault();
      listFrom($("prefix").value);
    });
    $("limit").addEventListener("change", () => listFrom($("prefix").value));
    $("next-page").addEventListener("click", () => {
      const last = list.items[list.items.length - 1];
      if (!last) return;
      list.starts.push(last.key);
      loadPage();
    });
    $("prev-page").addEventListener("click", () => {
      if (list.starts.length > 1) list.starts.pop();
      loadPage();
    });
    $("new-key").addEventListener("click", newKey);
    $("editor-form").addEventListener("submit", (e) => {
      e.preventDefault();
      save(editor.creating || !editor.item ? null : editor.item.revision);
    });
    $("value").addEventListener("input", () => {
      editor.dirty = $("value").value !== (editor.item ? editor.item.value : "");
    });
    $("reload").addEventListener("click", () => editor.key !== null && openKey(editor.key));
    $("delete").addEventListener("click", remove);
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) {
        refreshCluster();
        refreshLeases();
      }
    });

    listFrom($("prefix").value);
    if (hash.get("key") !== null) openKey(hash.get("key"));
    refreshCluster();
    refreshLeases();
    setInterval(refreshCluster, CLUSTER_EVERY_MS);
    setInterval(refreshLeases, LEASES_EVERY_MS);
    setInterval(tick, TICK_MS);
  }

  init();
})();
