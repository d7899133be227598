// verifyd operations console. No framework, no build step, nothing from
// another origin. Every value is put in the page as text (never as HTML).
// The session is a cookie the server set at sign-in; the CSRF token it gave
// rides along with every request that changes something.
"use strict";

(function () {
  const REFRESH_MS = 5000;
  let csrf = "";
  let paused = false;
  let timer = null;
  let openLetter = null;

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  async function api(method, path, body) {
    const headers = { "Accept": "application/json" };
    if (method !== "GET") headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    const text = await response.text();
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = { detail: text }; }
    }
    if (response.status === 401) {
      showSignIn("Your session ended. Sign in again.");
      throw new Error("signed out");
    }
    if (!response.ok) {
      const error = new Error((data && (data.detail || data.error)) || response.statusText);
      error.problem = data;
      error.status = response.status;
      throw error;
    }
    return data;
  }

  // ---- formatting ---------------------------------------------------------

  function time(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    const today = new Date().toDateString() === d.toDateString();
    return today ? d.toLocaleTimeString() : d.toLocaleString();
  }

  function age(secs) {
    if (secs === null || secs === undefined) return "?";
    if (secs < 1) return "0 s";
    if (secs < 120) return Math.round(secs) + " s";
    if (secs < 7200) return Math.round(secs / 60) + " min";
    return (secs / 3600).toFixed(1) + " h";
  }

  function pct(rate) {
    return rate === null || rate === undefined ? "–" : (rate * 100).toFixed(rate >= 0.995 || rate === 0 ? 0 : 1) + " %";
  }

  function ms(v) {
    return v === null || v === undefined ? "–" : Math.round(v) + " ms";
  }

  function pill(text, kind) {
    return el("span", { class: "pill " + (kind || ""), text });
  }

  function fill(tbody, rows, emptyId) {
    tbody.replaceChildren(...rows);
    if (emptyId) $(emptyId).hidden = rows.length > 0;
  }

  function toast(message, kind) {
    const t = $("toast");
    t.textContent = message;
    t.className = "toast show " + (kind || "");
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.className = "toast"; }, 6000);
  }

  // ---- sign-in ------------------------------------------------------------

  function showSignIn(message) {
    stopRefresh();
    $("console").hidden = true;
    $("session").hidden = true;
    $("sign-in").hidden = false;
    $("sign-in-error").textContent = message || "";
    $("key-input").focus();
  }

  function showConsole(session) {
    csrf = session.csrf_token;
    $("view-name").textContent = session.view === "deployment" ? "whole deployment" : "tenant " + session.view;
    $("key-id").textContent = session.key_id;
    $("sign-in").hidden = true;
    $("console").hidden = false;
    $("session").hidden = false;
    document.body.dataset.view = session.view;
    refresh();
  }

  $("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("key-input");
    const key = input.value.trim();
    $("sign-in-error").textContent = "";
    try {
      const response = await fetch("/ops/session", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        credentials: "same-origin",
        body: JSON.stringify({ key }),
      });
      const data = await response.json().catch(() => ({}));
      if (!response.ok) {
        $("sign-in-error").textContent = data.detail || "That key was not accepted.";
        return;
      }
      input.value = "";
      showConsole(data);
    } catch (error) {
      $("sign-in-error").textContent = "verifyd did not answer: " + error.message;
    }
  });

  $("sign-out").addEventListener("click", async () => {
    try { await api("DELETE", "/ops/session"); } catch (_) { /* signed out either way */ }
    csrf = "";
    showSignIn("Signed out.");
  });

  $("pause").addEventListener("click", () => {
    paused = !paused;
    $("pause").textContent = paused ? "Resume" : "Pause";
    if (!paused) refresh();
  });

  // ---- refresh ------------------------------------------------------------

  function stopRefresh() {
    clearTimeout(timer);
    timer = null;
  }

  function filterQuery() {
    const form = $("letter-filter");
    const params = new URLSearchParams();
    for (const name of ["reason", "channel", "status", "tenant"]) {
      const value = form.elements[name].value.trim();
      if (value) params.set(name, value);
    }
    params.set("limit", "100");
    return params;
  }

  async function refresh() {
    stopRefresh();
    try {
      const [overview, letters] = await Promise.all([
        api("GET", "/v1/ops/overview"),
        api("GET", "/v1/ops/dead-letters?" + filterQuery().toString()),
      ]);
      render(overview, letters.dead_letters);
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
      $("updated").classList.remove("stale");
    } catch (error) {
      if (error.message === "signed out") return;
      $("updated").textContent = "not updated: " + error.message;
      $("updated").classList.add("stale");
    }
    if (!paused && !$("console").hidden) timer = setTimeout(refresh, REFRESH_MS);
  }

  $("letter-filter").addEventListener("change", () => refresh());
  $("letter-filter").addEventListener("submit", (e) => { e.preventDefault(); refresh(); });

  // ---- rendering ----------------------------------------------------------

  function render(o, letters) {
    const backlog = o.queues.filter((q) => q.messages > 0 && !q.queue.includes(".retry."));
    const oldest = Math.max(0, ...o.queues.filter((q) => !q.queue.includes(".retry.")).map((q) => q.oldest_age_secs || 0));
    const open = o.providers.flatMap((p) => p.circuits.filter((c) => c.state !== "closed").map(() => p.provider));
    const running = o.processes.filter((p) => p.state === "running");
    const stale = o.processes.filter((p) => p.state === "stale");
    $("cards").replaceChildren(
      card("Dead letters", o.dead_letters.waiting, o.dead_letters.waiting ? "bad" : "good",
        Object.entries(o.dead_letters.by_reason).map(([k, n]) => k + " " + n).join(", ") || "none waiting"),
      card("Waiting to send", backlog.reduce((n, q) => n + q.messages, 0), backlog.length ? "warn" : "good",
        "oldest " + age(oldest)),
      card("Open circuits", open.length, open.length ? "bad" : "good",
        open.length ? [...new Set(open)].join(", ") : "every provider closed"),
      card("Processes", running.length, stale.length ? "warn" : "good",
        stale.length ? stale.length + " stale" : "all reporting"),
      card("Outbox", o.outbox.rows, o.outbox.rows > 100 ? "warn" : "good",
        o.outbox.rows ? "oldest " + age(o.outbox.oldest_age_secs) : "all published"),
      card("Webhooks pending", o.webhooks.pending, o.webhooks.pending > 100 ? "warn" : "good",
        o.webhooks.pending ? "oldest " + age(o.webhooks.oldest_pending_age_secs) : "all delivered"),
    );
    renderLetters(letters);
    renderProviders(o.providers);
    fill($("queues").tBodies[0], o.queues.map((q) => el("tr", { class: q.missing ? "muted" : "" },
      el("td", { class: "mono", text: q.queue }),
      el("td", { class: "num", text: q.messages }),
      el("td", { class: "num" }, q.consumers === 0 && !q.queue.includes(".retry.") ? pill("0", "bad") : String(q.consumers)),
      el("td", { class: "num", text: age(q.oldest_age_secs) }),
    )));
    fill($("failures").tBodies[0], o.recent_failures.map((a) => el("tr", {},
      el("td", { text: time(a.at) }),
      el("td", { text: a.provider || "–" }),
      el("td", { class: "mono", text: a.to || "–" }),
      el("td", {}, pill(a.outcome.replace("_error", ""), a.outcome === "retryable_error" ? "warn" : "bad")),
      el("td", { text: a.error_kind || "–" }),
      el("td", { class: "wrap", text: a.error || "" }),
    )), "failures-empty");
    fill($("conversion").tBodies[0], o.conversion.map((c) => el("tr", {},
      el("td", { text: c.channel }),
      el("td", { text: c.country || "–" }),
      el("td", { class: "num", text: pct(c["5m"].rate) + " (" + c["5m"].approved + "/" + c["5m"].sent + ")" }),
      el("td", { class: "num", text: pct(c["60m"].rate) + " (" + c["60m"].approved + "/" + c["60m"].sent + ")" }),
    )), "conversion-empty");
    fill($("blocks").tBodies[0], o.blocked_prefixes.map((b) => el("tr", {},
      el("td", { text: b.tenant }),
      el("td", { class: "mono", text: b.prefix + (b.country ? " (" + b.country + ")" : "") }),
      el("td", { text: time(b.blocked_until) }),
      el("td", { class: "num", text: b.sent + " / " + b.approved }),
    )), "blocks-empty");
    fill($("processes").tBodies[0], o.processes.map((p) => el("tr", { class: p.state === "stopped" ? "muted" : "" },
      el("td", { text: p.role }),
      el("td", { text: p.host }),
      el("td", { class: "num", text: p.pid }),
      el("td", {}, pill(p.state, p.state === "running" ? "good" : p.state === "stale" ? "warn" : "")),
      el("td", { class: "num", text: p.consumers.live + " / " + p.consumers.expected }),
      el("td", { text: time(p.started_at) }),
      el("td", { text: time(p.seen_at) }),
    )));
  }

  function card(title, value, kind, note) {
    return el("div", { class: "card " + kind },
      el("div", { class: "card-title", text: title }),
      el("div", { class: "card-value", text: value }),
      el("div", { class: "card-note", text: note }));
  }

  function renderProviders(providers) {
    fill($("providers").tBodies[0], providers.map((p) => {
      const a = p["5m"], b = p["60m"];
      const errors = Object.entries(b.errors).map(([k, n]) => k + " " + n).join(", ") || "–";
      const circuits = p.circuits.length
        ? p.circuits.map((c) => pill(
          c.state.replace("_", "-") + (c.state === "open" && c.open_until ? " until " + time(c.open_until) : "") + " · " + c.host,
          c.state === "closed" ? "good" : c.state === "open" ? "bad" : "warn"))
        : [el("span", { class: "muted", text: "no running process" })];
      return el("tr", { "data-provider": p.provider },
        el("td", { class: "strong", text: p.provider }),
        el("td", { class: "num", text: a.sends + " · " + b.sends }),
        el("td", { class: "num", text: pct(a.success_rate) + " · " + pct(b.success_rate) }),
        el("td", { class: "num", text: ms(b.p50_ms) + " / " + ms(b.p95_ms) }),
        el("td", { class: "wrap", text: errors }),
        el("td", { class: "circuits" }, circuits),
        el("td", { text: p.pacing ? p.pacing.used_per_sec.toFixed(1) + " of " + p.pacing.tps + "/s" : "–" }),
      );
    }));
  }

  function renderLetters(letters) {
    fill($("letters").tBodies[0], letters.map((l) => {
      const waiting = l.status === "dead";
      return el("tr", { "data-letter-id": l.id, class: waiting ? "" : "muted" },
        el("td", { text: time(l.dead_lettered_at) }),
        el("td", { text: l.tenant || "–" }),
        el("td", { text: l.channel || "–" }),
        el("td", {}, pill(l.reason_kind, "bad"), el("div", { class: "reason", text: l.reason })),
        el("td", {}, pill(waiting ? "waiting" : l.status, waiting ? "warn" : "")),
        el("td", { class: "row-actions" }, el("div", {},
          el("button", { type: "button", class: "quiet inspect", text: "Inspect", onclick: () => inspect(l.id) }),
          waiting ? el("button", { type: "button", class: "replay", text: "Replay", onclick: (e) => replay(l.id, e.target) }) : null)),
      );
    }), "letters-empty");
  }

  // ---- actions ------------------------------------------------------------

  async function replay(id, button) {
    if (button) button.disabled = true;
    try {
      const answer = await api("POST", "/v1/ops/dead-letters/" + id + "/replay");
      toast("Replayed: the code goes out again (job " + answer.replayed.job_id.slice(0, 8) + ").", "good");
      if ($("letter-dialog").open) $("letter-dialog").close();
    } catch (error) {
      if (error.message !== "signed out") toast("Not replayed: " + error.message, "bad");
      if ($("letter-dialog").open) $("dialog-error").textContent = error.message;
    }
    refresh();
  }

  async function discard(id) {
    const reason = $("discard-reason").value.trim();
    if (!reason) {
      $("dialog-error").textContent = "Say why it is discarded: it is kept with the letter and in the audit trail.";
      $("discard-reason").focus();
      return;
    }
    try {
      await api("POST", "/v1/ops/dead-letters/" + id + "/discard", { reason });
      toast("Discarded.", "good");
      $("letter-dialog").close();
    } catch (error) {
      $("dialog-error").textContent = error.message;
    }
    refresh();
  }

  $("replay-matching").addEventListener("click", async () => {
    const params = filterQuery();
    const body = {};
    for (const name of ["reason", "channel", "tenant"]) if (params.get(name)) body[name] = params.get(name);
    try {
      const answer = await api("POST", "/v1/ops/dead-letters/replay", body);
      const refused = answer.refused.length ? "; " + answer.refused.length + " refused (" + answer.refused[0].detail + ")" : "";
      toast("Replayed " + answer.done.length + refused + ".", answer.refused.length ? "warn" : "good");
    } catch (error) {
      if (error.message !== "signed out") toast("Not replayed: " + error.message, "bad");
    }
    refresh();
  });

  async function inspect(id) {
    let d;
    try {
      d = await api("GET", "/v1/ops/dead-letters/" + id);
    } catch (error) {
      if (error.message !== "signed out") toast("Cannot open it: " + error.message, "bad");
      return;
    }
    openLetter = d;
    const facts = [
      ["Letter", d.id], ["Status", d.status + (d.resolved_by ? " by " + d.resolved_by + " at " + time(d.resolved_at) : "")],
      ["Because", d.resolution], ["Tenant", d.tenant], ["Queue", d.source_queue],
      ["Reason", d.reason_kind + " — " + d.reason], ["Dead-lettered", time(d.dead_lettered_at)],
      ["First failure", time(d.first_failure_at)], ["Last failure", time(d.last_failure_at)],
      ["Verification", d.verification ? d.verification_id + " · " + d.verification.status + " · " + d.verification.channel +
        " to " + d.verification.to + " · expires " + time(d.verification.expires_at) : d.verification_id],
      ["Replayable", d.replayable ? "yes" : "no: " + d.not_replayable],
      ["Replay job", d.replay_job_id],
    ].filter(([, v]) => v !== undefined && v !== null && v !== "");
    $("letter-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
    fill($("letter-attempts").tBodies[0], d.attempts.map((a) => el("tr", { class: a.job_id === d.job_id ? "" : "muted" },
      el("td", { text: time(a.at) }),
      el("td", { text: a.provider || "–" }),
      el("td", {}, pill(a.outcome, a.outcome === "sent" ? "good" : a.outcome === "retryable_error" ? "warn" : "bad")),
      el("td", { text: a.error_kind || "–" }),
      el("td", { class: "num", text: a.latency_ms === null || a.latency_ms === undefined ? "–" : a.latency_ms + " ms" }),
      el("td", { class: "wrap", text: a.error || "" }),
    )));
    $("letter-body").textContent = d.body.text + (d.body.truncated ? "\n… (" + d.body.bytes + " bytes in all)" : "");
    $("dialog-replay").disabled = !d.replayable;
    $("dialog-discard").disabled = d.status !== "dead";
    $("discard-reason").value = "";
    $("dialog-error").textContent = "";
    $("letter-dialog").showModal();
  }

  $("dialog-replay").addEventListener("click", () => openLetter && replay(openLetter.id, $("dialog-replay")));
  $("dialog-discard").addEventListener("click", () => openLetter && discard(openLetter.id));

  // ---- start --------------------------------------------------------------

  (async function start() {
    try {
      const response = await fetch("/ops/session", { credentials: "same-origin", cache: "no-store" });
      if (response.ok) {
        showConsole(await response.json());
        return;
      }
    } catch (_) { /* not signed in */ }
    showSignIn("");
  })();
})();
