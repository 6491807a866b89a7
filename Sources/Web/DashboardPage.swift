// The dashboard's page, script and style, compiled into the binary so that the page needs
// nothing from the network (no CDN) and a copied `kiln` binary serves it as it is.
// Edit them here; the browser test (Ops/dashboard-test.sh) checks what they show.
enum DashboardPage {
    static let html = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Kiln</title>
        <link rel="stylesheet" href="/app.css">
        </head>
        <body>
        <header><h1>Kiln</h1><span id="feed" class="feed">connecting…</span></header>
        <main>
        <section><h2>Jobs</h2><table id="jobs"><thead><tr><th>job</th><th>state</th><th>model → output</th><th>blocks</th><th>progress</th><th>elapsed</th></tr></thead><tbody></tbody></table></section>
        <section id="job" hidden>
        <h2>Job <span id="job-id"></span> <span id="job-state" class="state"></span></h2>
        <p id="job-error" class="error" hidden></p>
        <div class="grid">
        <div><h3>Blocks</h3><table id="blocks"><thead><tr><th>block</th><th>stage</th><th>statistics</th><th>merge</th><th>reconstruct</th><th>linears</th><th>propagate</th><th>worker</th><th>max rel. error</th></tr></thead><tbody></tbody></table></div>
        <div>
        <h3>Relative output error per linear</h3><div id="heatmap"></div>
        <h3>Perplexity</h3><div id="ppl"></div>
        <h3>Time per phase</h3><div id="phases"></div>
        </div>
        </div>
        </section>
        <section><h2>Workers</h2><table id="workers"><thead><tr><th>worker</th><th>host</th><th>state</th><th>current task</th><th>tasks done</th><th>heartbeat age</th></tr></thead><tbody></tbody></table></section>
        </main>
        <script src="/app.js"></script>
        </body>
        </html>
        """#

    static let style = #"""
        body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d232a; background: #f6f7f9; }
        header { display: flex; align-items: baseline; gap: 1em; padding: 0.6em 1.2em; background: #23282f; color: #fff; }
        header h1 { font-size: 1.3em; margin: 0; }
        .feed { font-size: 0.9em; color: #9fd49f; }
        .feed.down { color: #ff9a8a; }
        main { padding: 0.5em 1.2em; }
        h2 { font-size: 1.1em; margin: 1em 0 0.4em; }
        h3 { font-size: 1em; margin: 0.8em 0 0.3em; }
        table { border-collapse: collapse; background: #fff; }
        th, td { padding: 3px 8px; border-bottom: 1px solid #e3e6ea; text-align: left; white-space: nowrap; }
        th { background: #eef0f3; font-weight: 600; }
        tr.selected td { background: #e8f0fe; }
        #jobs tbody tr { cursor: pointer; }
        .grid { display: flex; flex-wrap: wrap; gap: 2em; align-items: flex-start; }
        .bar { display: inline-block; width: 120px; height: 10px; background: #e3e6ea; border-radius: 3px; overflow: hidden; vertical-align: middle; }
        .bar > span { display: block; height: 100%; background: #3b82f6; }
        .state { font-size: 0.85em; padding: 1px 6px; border-radius: 3px; background: #e3e6ea; }
        .state.running, .stage.reconstructing, .stage.statistics, .stage.merging, .stage.propagating { background: #fde68a; }
        .state.succeeded, .stage.done { background: #bbf7d0; }
        .state.failed, .state.cancelled { background: #fecaca; }
        .stage { padding: 1px 6px; border-radius: 3px; background: #e3e6ea; }
        .lin { display: inline-block; width: 9px; height: 9px; margin-right: 1px; background: #e3e6ea; border-radius: 2px; }
        .lin.done { background: #22c55e; }
        .error { color: #b91c1c; }
        .heat { border-collapse: collapse; }
        .heat td, .heat th { padding: 0; border: 1px solid #fff; font-size: 11px; }
        .heat td { width: 40px; height: 14px; text-align: center; color: #111; }
        .heat th { padding: 0 4px; }
        .legend { font-size: 11px; color: #555; }
        svg text { font: 11px system-ui, sans-serif; }
        .muted { color: #6b7280; }
        """#

    static let script = #"""
        "use strict";
        // Kiln dashboard: the coordinator's state (/api/events: "state", then "update" events in
        // the order and with the sequence numbers of the progress feed `kiln watch` reads).
        const PHASES = ["PHASE_COLLECT", "PHASE_MERGE", "PHASE_RECONSTRUCT", "PHASE_PROPAGATE"];
        const PHASE_NAMES = { PHASE_COLLECT: "statistics", PHASE_MERGE: "merge", PHASE_RECONSTRUCT: "reconstruct", PHASE_PROPAGATE: "propagate" };
        const LINEAR_ORDER = ["attn_q", "attn_k", "attn_v", "attn_output", "attn_qkv", "ffn_gate", "ffn_up", "ffn_down"];
        let state = { sequence: 0, jobs: {}, order: [], workers: [] };
        let clockOffset = 0; // server's now minus ours
        let selected = null;
        let scheduled = false;

        const num = (v) => (v === undefined || v === null ? 0 : Number(v));
        const el = (tag, attrs, ...kids) => {
          const e = document.createElement(tag);
          for (const [k, v] of Object.entries(attrs || {})) {
            if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
          }
          for (const k of kids) e.append(k);
          return e;
        };
        const stateName = (s) => (s || "JOB_STATE_UNSPECIFIED").replace("JOB_STATE_", "").toLowerCase();
        const fmtMs = (ms) => {
          ms = Math.max(0, ms);
          if (ms < 1000) return ms + " ms";
          const s = ms / 1000;
          if (s < 60) return s.toFixed(1) + " s";
          return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
        };

        function setState(s) {
          state = { sequence: num(s.sequence), jobs: {}, order: [], workers: s.workers || [] };
          for (const j of s.jobs || []) { state.jobs[j.job_id] = j; state.order.push(j.job_id); }
          clockOffset = num(s.now_unix_ms) - Date.now();
          setFeed(s.feed_error);
        }

        // The coordinator's merge rules (Client/JobView): a full status replaces the job's; a
        // module replaces the one with the same (block, module, phase); a state sets the state.
        function applyUpdate(u) {
          const seq = num(u.sequence);
          if (seq <= state.sequence) return;
          state.sequence = seq;
          const id = u.job_id;
          if (!id) return;
          if (!state.jobs[id]) { state.jobs[id] = { job_id: id, modules: [] }; state.order.push(id); }
          if (u.status) state.jobs[id] = u.status;
          const job = state.jobs[id];
          if (u.state) job.state = u.state;
          if (u.module) {
            const m = u.module;
            job.modules = job.modules || [];
            const i = job.modules.findIndex((x) => num(x.block) === num(m.block) && (x.module || "") === (m.module || "") && x.phase === m.phase);
            if (i >= 0) job.modules[i] = m; else job.modules.push(m);
          }
        }

        let ended = null;
        function setFeed(err) {
          const f = document.getElementById("feed");
          if (ended) { f.textContent = ended; f.className = "feed"; return; }
          if (err) { f.textContent = "coordinator unreachable: " + err; f.className = "feed down"; }
          else { f.textContent = "live · sequence " + state.sequence; f.className = "feed"; }
        }

        function render() {
          scheduled = false;
          setFeed(null);
          renderJobs();
          renderJob();
          renderWorkers();
        }
        function later() { if (!scheduled) { scheduled = true; requestAnimationFrame(render); } }

        function jobFraction(job) {
          const total = num(job.blocks_total);
          if (!total) return 0;
          return stateName(job.state) === "succeeded" ? 1 : blockRows(job).filter((r) => r.stage === "done").length / total;
        }

        function renderJobs() {
          const body = document.querySelector("#jobs tbody");
          body.replaceChildren();
          if (!selected || !state.jobs[selected]) selected = state.order[state.order.length - 1] || null;
          for (const id of state.order) {
            const j = state.jobs[id];
            const spec = j.spec || {};
            const frac = jobFraction(j);
            const rows = blockRows(j);
            const tr = el("tr", { "data-job": id, class: id === selected ? "selected" : "" },
              el("td", { text: id }),
              el("td", {}, el("span", { class: "state " + stateName(j.state), text: stateName(j.state) })),
              el("td", { text: (spec.model_path || "").split("/").pop() + " → " + (spec.output_path || "").split("/").pop() }),
              el("td", { text: rows.filter((r) => r.stage === "done").length + "/" + num(j.blocks_total) }),
              el("td", {}, bar(frac)),
              el("td", { text: fmtMs(jobElapsed(j)) }));
            tr.addEventListener("click", () => { selected = id; render(); });
            body.append(tr);
          }
        }

        const TERMINAL = ["succeeded", "failed", "cancelled"];
        // A running job's elapsed time goes on between updates; an ended one's is its status's.
        function jobElapsed(job) {
          if (TERMINAL.includes(stateName(job.state)) || !num(job.submitted_unix_ms)) return num(job.elapsed_ms);
          return Math.max(num(job.elapsed_ms), Date.now() + clockOffset - num(job.submitted_unix_ms));
        }

        function bar(frac) {
          const b = el("span", { class: "bar" });
          const f = el("span");
          f.style.width = Math.round(100 * Math.min(1, Math.max(0, frac))) + "%";
          b.append(f);
          return b;
        }

        // Per block: counts per phase, the stage (first unfinished phase), workers, errors.
        function blockRows(job) {
          const n = Math.max(num(job.blocks_total), ...(job.modules || []).map((m) => num(m.block) + 1), 0);
          const rows = [];
          for (let b = 0; b < n; b++) rows.push({ block: b, phases: {}, linears: {}, workers: new Set(), started: false, stage: "waiting" });
          for (const m of job.modules || []) {
            const r = rows[num(m.block)];
            if (!r || !PHASES.includes(m.phase)) continue;
            const p = r.phases[m.phase] || (r.phases[m.phase] = { done: 0, total: 0, start: 0, end: 0 });
            p.done += num(m.done); p.total += num(m.total);
            const start = num(m.started_unix_ms);
            if (start) {
              p.start = p.start ? Math.min(p.start, start) : start;
              p.end = Math.max(p.end, start + num(m.elapsed_ms));
            }
            if (num(m.done) > 0 || start) r.started = true;
            if (m.worker_id && num(m.done) < num(m.total)) r.workers.add(m.worker_id);
            else if (m.worker_id && !r.workers.size) r.lastWorker = m.worker_id;
            Object.assign(r.linears, m.linear_errors || {});
          }
          const succeeded = stateName(job.state) === "succeeded";
          for (const r of rows) {
            const open = PHASES.find((ph) => r.phases[ph] && r.phases[ph].total > 0 && r.phases[ph].done < r.phases[ph].total);
            const rec = r.phases.PHASE_RECONSTRUCT;
            if (succeeded) r.stage = "done";
            else if (!r.started) r.stage = "waiting";
            else if (open) r.stage = { PHASE_COLLECT: "statistics", PHASE_MERGE: "merging", PHASE_RECONSTRUCT: "reconstructing", PHASE_PROPAGATE: "propagating" }[open];
            else r.stage = rec && rec.total > 0 && rec.done >= rec.total ? "done" : "merging";
          }
          return rows;
        }

        function linearNames(rows) {
          const names = new Set();
          for (const r of rows) for (const k of Object.keys(r.linears)) names.add(k);
          return [...names].sort((a, b) => {
            const ia = LINEAR_ORDER.indexOf(a), ib = LINEAR_ORDER.indexOf(b);
            return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
          });
        }

        function renderJob() {
          const sec = document.getElementById("job");
          const job = selected && state.jobs[selected];
          sec.hidden = !job;
          if (!job) return;
          document.getElementById("job-id").textContent = job.job_id;
          const st = document.getElementById("job-state");
          st.textContent = stateName(job.state); st.className = "state " + stateName(job.state);
          const err = document.getElementById("job-error");
          err.hidden = !job.error; err.textContent = job.error ? job.error.message || "" : "";
          const rows = blockRows(job);
          const names = linearNames(rows);
          const body = document.querySelector("#blocks tbody");
          body.replaceChildren();
          const count = (r, ph) => { const p = r.phases[ph]; return p && p.total ? p.done + "/" + p.total : "–"; };
          for (const r of rows) {
            const chips = el("td", {});
            for (const n of names) chips.append(el("span", { class: "lin" + (n in r.linears ? " done" : ""), title: n }));
            const errs = Object.values(r.linears);
            body.append(el("tr", { "data-block": String(r.block), "data-stage": r.stage },
              el("td", { text: String(r.block) }),
              el("td", {}, el("span", { class: "stage " + r.stage, text: r.stage })),
              el("td", { text: count(r, "PHASE_COLLECT") }), el("td", { text: count(r, "PHASE_MERGE") }),
              el("td", { text: count(r, "PHASE_RECONSTRUCT") }), chips, el("td", { text: count(r, "PHASE_PROPAGATE") }),
              el("td", { text: [...r.workers].join(", ") || r.lastWorker || "" }),
              el("td", { text: errs.length ? Math.max(...errs).toExponential(2) : "" })));
          }
          renderHeatmap(rows, names);
          renderPerplexity(job);
          renderPhases(rows, job);
        }

        // Blocks x linears, colour by log10 of the relative output error over the job's range.
        function renderHeatmap(rows, names) {
          const host = document.getElementById("heatmap");
          host.replaceChildren();
          const values = rows.flatMap((r) => Object.values(r.linears)).filter((v) => v > 0);
          if (!values.length) { host.append(el("p", { class: "muted", text: "no linear reconstructed yet" })); return; }
          const lo = Math.log10(Math.min(...values)), hi = Math.log10(Math.max(...values));
          const t = el("table", { class: "heat", id: "heat" });
          t.append(el("tr", {}, el("th", { text: "block" }), ...names.map((n) => el("th", { text: n }))));
          for (const r of rows) {
            const tr = el("tr", {}, el("th", { text: String(r.block) }));
            for (const n of names) {
              const v = r.linears[n];
              const td = el("td", { title: n + " block " + r.block + (v !== undefined ? ": " + v.toExponential(3) : "") });
              if (v !== undefined) {
                td.className = "cell";
                const x = hi > lo ? (Math.log10(Math.max(v, 1e-30)) - lo) / (hi - lo) : 0.5;
                td.style.background = "hsl(" + Math.round(120 * (1 - x)) + ",75%,55%)";
              }
              tr.append(td);
            }
            t.append(tr);
          }
          host.append(t, el("div", { class: "legend", text: "green " + Math.min(...values).toExponential(2) + " … red " + Math.max(...values).toExponential(2) }));
        }

        function svgBars(items, unit) {
          const ns = "http://www.w3.org/2000/svg";
          const w = 420, rowH = 22, label = 110;
          const svg = document.createElementNS(ns, "svg");
          svg.setAttribute("width", w); svg.setAttribute("height", rowH * items.length + 4);
          const max = Math.max(...items.map((i) => i.value), 1e-9);
          items.forEach((it, k) => {
            const y = k * rowH + 2;
            const t = document.createElementNS(ns, "text");
            t.setAttribute("x", 0); t.setAttribute("y", y + 14); t.textContent = it.name; svg.append(t);
            const r = document.createElementNS(ns, "rect");
            const bw = Math.max(1, (w - label - 80) * it.value / max);
            r.setAttribute("x", label); r.setAttribute("y", y + 3); r.setAttribute("width", bw); r.setAttribute("height", 14);
            r.setAttribute("fill", it.color || "#3b82f6"); svg.append(r);
            const v = document.createElementNS(ns, "text");
            v.setAttribute("x", label + bw + 4); v.setAttribute("y", y + 14); v.textContent = it.text || it.value.toFixed(2) + (unit || "");
            svg.append(v);
          });
          return svg;
        }

        function renderPerplexity(job) {
          const host = document.getElementById("ppl");
          host.replaceChildren();
          const ev = job.eval_results || {};
          const items = [];
          if (ev.perplexity_before !== undefined) items.push({ name: "before", value: num(ev.perplexity_before), color: "#6b7280" });
          if (ev.perplexity_after !== undefined) items.push({ name: "after", value: num(ev.perplexity_after), color: "#3b82f6" });
          if (!items.length) {
            host.append(el("p", { class: "muted", id: "ppl-none", text: stateName(job.state) === "succeeded"
              ? "not evaluated: this job has no --eval text (or the cluster did not evaluate it; `kiln eval` measures a written file)"
              : "measured when the job has written its output (with --eval)" }));
            return;
          }
          const svg = svgBars(items);
          svg.id = "ppl-plot";
          host.append(svg);
        }

        // Wall time of each phase over all blocks (first start to last end), and the job's total.
        function renderPhases(rows, job) {
          const host = document.getElementById("phases");
          host.replaceChildren();
          const items = [];
          for (const ph of PHASES) {
            let start = 0, end = 0;
            for (const r of rows) {
              const p = r.phases[ph];
              if (!p || !p.start) continue;
              start = start ? Math.min(start, p.start) : p.start;
              end = Math.max(end, p.end);
            }
            if (start) items.push({ name: PHASE_NAMES[ph], value: (end - start) / 1000, text: fmtMs(end - start) });
          }
          const ev = job.eval_results || {};
          for (const [key, name] of [["eval_before_seconds", "eval before"], ["eval_after_seconds", "eval after"]]) {
            if (ev[key] !== undefined) items.push({ name: name, value: num(ev[key]), text: fmtMs(Math.round(1000 * num(ev[key]))), color: "#a855f7" });
          }
          const elapsed = jobElapsed(job);
          if (elapsed) items.push({ name: "job", value: elapsed / 1000, text: fmtMs(elapsed), color: "#6b7280" });
          if (!items.length) { host.append(el("p", { class: "muted", text: "no phase started yet" })); return; }
          const svg = svgBars(items);
          svg.id = "phase-plot";
          host.append(svg);
        }

        function renderWorkers() {
          const body = document.querySelector("#workers tbody");
          body.replaceChildren();
          const now = Date.now() + clockOffset;
          for (const w of state.workers) {
            const age = num(w.last_heartbeat_unix_ms) ? now - num(w.last_heartbeat_unix_ms) : null;
            body.append(el("tr", { "data-worker": w.worker_id },
              el("td", { text: w.worker_id }), el("td", { text: w.hostname || "" }),
              el("td", { text: (w.state || "").replace("WORKER_STATE_", "").toLowerCase() }),
              el("td", { text: (w.running_task_ids || []).join(", ") || "idle" }),
              el("td", { text: String(num(w.tasks_done)) }),
              el("td", { text: age === null ? "" : fmtMs(age) })));
          }
        }

        function connect() {
          const es = new EventSource("/api/events");
          es.addEventListener("state", (e) => { setState(JSON.parse(e.data)); later(); });
          es.addEventListener("update", (e) => { applyUpdate(JSON.parse(e.data)); later(); });
          es.addEventListener("workers", (e) => { state.workers = JSON.parse(e.data); later(); });
          es.addEventListener("feed_error", (e) => { setFeed(JSON.parse(e.data)); });
          es.addEventListener("ended", (e) => {
            ended = JSON.parse(e.data);
            const f = document.getElementById("feed");
            f.textContent = ended; f.className = "feed";
          });
          es.onerror = () => setFeed("the dashboard's event stream dropped; reconnecting");
        }
        connect();
        setInterval(later, 1000);
        """#
}
