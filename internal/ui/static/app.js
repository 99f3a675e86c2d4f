// tidemark status page: plain JavaScript, no framework, no build step
// (internal/ui/doc.go). Everything shown comes from the APIs, fetched with the
// key the user typed; the key is kept in this tab's sessionStorage and sent
// only as "Authorization: Bearer KEY" (never in a URL or a cookie).
'use strict'

const STATUS_MS = 5000 // how often the destinations refresh
const SERIES_MS = 10000 // the charts
const AUDIT_MS = 60000 // the completeness grid (an audit reads the destinations)
const GRID_ROWS = 50 // grid rows drawn before "show all"
const AUTO_AUDIT_MAX = 100 // with more destinations, the selected range is audited only on request
const TAIL_ROWS = 200 // live-tail lines kept
const KEY_ITEM = 'tidemark.key'

const $ = (id) => document.getElementById(id)
const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ESC[c])
const fmtInt = (n) => Number(n || 0).toLocaleString('en-US')
const plural = (n, w) => fmtInt(n) + ' ' + w + (n === 1 ? '' : 's')

let key = ''
let status = null // the last GET /api/v1/status
let timers = []
let live = null // the live tail's AbortController
let gridAll = false
let openCell = null // {org, dest, hour}

// ---- time and numbers ----

function dur (s) {
  if (s < 1) return '0 s'
  if (s < 120) return Math.round(s) + ' s'
  if (s < 7200) return Math.round(s / 60) + ' min'
  if (s < 172800) return (s / 3600).toFixed(1) + ' h'
  return (s / 86400).toFixed(1) + ' d'
}
const utc = (ms) => new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + ' UTC'
const clock = (ms) => new Date(ms).toISOString().slice(11, 19)
const HOUR = 3600 * 1000

// ---- talking to the server ----

function authFetch (path, opts = {}) {
  return fetch(path, {
    ...opts,
    headers: { Authorization: 'Bearer ' + key, ...(opts.headers || {}) },
    cache: 'no-store',
    credentials: 'omit'
  })
}

async function errText (r) {
  const t = (await r.text()).trim()
  try { return JSON.parse(t).error || t } catch { return t || r.status + ' ' + r.statusText }
}

// api fetches path; a 401 means the key is no longer valid: sign out.
async function api (path, opts) {
  const r = await authFetch(path, opts)
  if (r.status === 401) {
    signOut('The server no longer accepts this key: sign in again.')
    throw new Error('signed out')
  }
  return r
}

async function getJSON (path, opts) {
  const r = await api(path, opts)
  if (!r.ok) throw new Error(await errText(r))
  return r.json()
}

// frames reads a streamed response body and calls each(frame) for each
// piece of it that ends with sep ("\n" for JSON lines, "\n\n" for
// Server-Sent Events).
async function frames (r, sep, each) {
  const reader = r.body.getReader()
  const dec = new TextDecoder()
  let buf = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done) return
    buf += dec.decode(value, { stream: true })
    let i
    while ((i = buf.indexOf(sep)) >= 0) {
      const frame = buf.slice(0, i)
      buf = buf.slice(i + sep.length)
      each(frame)
    }
  }
}

// ---- sign-in ----

async function signIn (k, quiet) {
  const err = $('signin-error')
  err.textContent = quiet ? '' : 'Checking the key…'
  let r
  try {
    r = await fetch('/api/v1/status', { headers: { Authorization: 'Bearer ' + k }, cache: 'no-store', credentials: 'omit' })
  } catch (e) {
    err.textContent = 'Cannot reach the server: ' + e.message
    return
  }
  if (r.status === 401 || r.status === 403) {
    sessionStorage.removeItem(KEY_ITEM)
    err.textContent = 'This key was refused. Sign in with an admin key or an org\'s read key (write keys cannot read the status).'
    return
  }
  if (r.status === 404) {
    err.textContent = 'This key was refused, and this server has no admin keys configured (admin_keys).'
    return
  }
  if (!r.ok) {
    err.textContent = 'The server answered ' + r.status + ': ' + await errText(r)
    return
  }
  key = k
  sessionStorage.setItem(KEY_ITEM, k)
  $('key').value = ''
  err.textContent = ''
  status = await r.json()
  start()
}

function signOut (msg) {
  key = ''
  sessionStorage.removeItem(KEY_ITEM)
  timers.forEach(clearInterval)
  timers = []
  stopLive()
  if (auditCtl) auditCtl.abort()
  status = audited = openCell = null
  audits.clear()
  for (const id of ['dest-rows', 'grid', 'chart-list', 'tail', 'cell', 'who', 'summary', 'updated',
    'grid-status', 'grid-more', 'charts-status', 'live-status', 'dest-more']) $(id).textContent = ''
  $('cell').hidden = true
  $('app').hidden = true
  $('signout').hidden = true
  $('signin').hidden = false
  $('signin-error').textContent = msg || ''
  $('key').focus()
}

function admin () { return status && !status.org }

function start () {
  $('signin').hidden = true
  $('app').hidden = false
  $('signout').hidden = false
  $('who').textContent = admin()
    ? 'Admin key: every org'
    : 'Org ' + status.org + ' (read key): backfill needs an admin key'
  $('live-org-field').hidden = !admin()
  renderStatus()
  if (autoAudit()) {
    loadAudit()
    timers.push(setInterval(() => loadAudit(), AUDIT_MS))
  } else {
    $('grid-status').textContent = 'The grid shows the background audit (the last ' + dur(status.audit.lookback_seconds) + ', redone every ' +
      dur(status.audit.interval_seconds) + '). With ' + plural(status.destinations.length, 'destination') +
      ', the selected range is audited only when you press Audit (it reads every destination back).'
  }
  loadSeries()
  timers.push(setInterval(refreshStatus, STATUS_MS))
  timers.push(setInterval(loadSeries, SERIES_MS))
}

// ---- destinations ----

// stateOf is what the table shows: down (the destination's writes fail),
// stalled (an undelivered row is older than its table's freshness SLA),
// auditing (up, and the background auditor is reading it back now) or up.
function stateOf (d) {
  if (d.state !== 'up') return 'down'
  if (Object.values(d.tables || {}).some((t) => t.stale)) return 'stalled'
  if (d.auditing_since) return 'auditing'
  return 'up'
}

// errorHTML shows an error message by its last part (the cause:
// "connection refused", "bucket ... does not exist") after prefix, the whole
// message one click away.
function errorHTML (prefix, msg) {
  return '<details class="err"><summary>' + esc(prefix + msg.split(': ').pop()) + '</summary>' +
    '<span class="full">' + esc(msg) + '</span></details>'
}

// reasonOf is the Reason cell's HTML: why the destination is not up, in the
// status API's words.
function reasonOf (d, state) {
  const parts = []
  const errAt = d.last_error_at ? Date.parse(d.last_error_at) : 0
  const commitAt = d.last_commit_at ? Date.parse(d.last_commit_at) : 0
  if (d.last_error && (state === 'down' || (state === 'stalled' && errAt >= commitAt))) {
    parts.push(errorHTML(d.last_error_op ? d.last_error_op + ': ' : '', d.last_error))
  }
  if (state !== 'up' && d.audit && d.audit.total.missing > 0) {
    parts.push(esc('the audit finds ' + plural(d.audit.total.missing, 'event') + ' missing in the destination (backfill them from the grid);'))
  }
  if (state === 'stalled') {
    for (const [name, t] of Object.entries(d.tables || {})) {
      if (t.stale) parts.push(esc(name + ' ' + dur(t.oldest_undelivered_age_seconds) + ' old, over its SLA of ' + dur(t.freshness_sla_seconds)))
    }
  }
  if (d.audit_error) parts.push(errorHTML('audit failed: ', d.audit_error))
  if (state === 'auditing') {
    parts.push('<span class="note">' + esc('audit in progress for ' + dur((Date.parse(status.now) - Date.parse(d.auditing_since)) / 1000)) + '</span>')
  }
  return parts.join(' ')
}

function auditOf (d) {
  if (!d.audit) return d.audit_error ? 'failed' : 'not yet'
  const t = d.audit.total
  if (t.missing > 0) return fmtInt(t.missing) + ' missing'
  if (t.duplicated > 0) return fmtInt(t.duplicated) + ' duplicated'
  return 'complete'
}

const RANK = { down: 0, stalled: 1, auditing: 2, up: 3 }

function rows () {
  const f = $('filter').value.trim().toLowerCase()
  const out = []
  for (const d of status.destinations || []) {
    if (f && !(d.org + '/' + d.name).toLowerCase().includes(f)) continue
    const state = stateOf(d)
    const bad = d.audit && (d.audit.total.missing > 0 || d.audit.total.duplicated > 0)
    out.push({ d, state, rank: RANK[state] * 2 + (bad ? 0 : 1) })
  }
  out.sort((a, b) => a.rank - b.rank || a.d.org.localeCompare(b.d.org) || a.d.name.localeCompare(b.d.name))
  return out
}

function renderStatus () {
  mergeStatusAudits()
  renderGrid()
  const now = Date.parse(status.now)
  const all = status.destinations || []
  const n = { up: 0, auditing: 0, stalled: 0, down: 0 }
  for (const d of all) n[stateOf(d)]++
  $('summary').textContent = plural(all.length, 'destination') + ': ' + n.up + ' up, ' + n.auditing + ' auditing, ' + n.stalled + ' stalled, ' + n.down + ' down'
  let html = ''
  for (const { d, state } of rows()) {
    const commit = d.last_commit_at ? Date.parse(d.last_commit_at) : 0
    const age = d.oldest_undelivered_age_seconds
    const audit = auditOf(d)
    html += '<tr class="r-' + state + '" data-org="' + esc(d.org) + '" data-dest="' + esc(d.name) + '" data-state="' + state + '">' +
      '<td data-label="Org">' + esc(d.org) + '</td>' +
      '<td data-label="Destination">' + esc(d.name) + '</td>' +
      '<td data-label="State"><span class="state s-' + state + '">' + state + '</span></td>' +
      '<td data-label="Last commit">' + (commit ? '<time datetime="' + esc(d.last_commit_at) + '" title="' + utc(commit) + '">' + dur((now - commit) / 1000) + ' ago</time>' : 'none yet') + '</td>' +
      '<td data-label="Oldest undelivered / SLA"' + (age > d.freshness_sla_seconds ? ' class="over"' : '') + '>' + dur(age) + ' / ' + dur(d.freshness_sla_seconds) + '</td>' +
      '<td data-label="Pending" class="num">' + fmtInt(d.pending_events) + '</td>' +
      '<td data-label="Audit"' + (audit.endsWith('missing') || audit.endsWith('duplicated') ? ' class="over"' : '') + '>' + audit + '</td>' +
      '<td data-label="Reason" class="reason">' + reasonOf(d, state) + '</td></tr>'
  }
  $('dest-rows').innerHTML = html || '<tr><td colspan="8">No destination' + ($('filter').value ? ' matches the filter' : '') + '.</td></tr>'
  const u = $('updated')
  u.classList.remove('stale')
  u.textContent = 'Updated ' + clock(now) + ' UTC (every ' + STATUS_MS / 1000 + ' s)'
}

async function refreshStatus () {
  if (document.hidden) return // a background tab costs the server nothing
  try {
    status = await getJSON('/api/v1/status')
    renderStatus()
  } catch (e) {
    if (!key) return
    const u = $('updated')
    u.classList.add('stale')
    u.textContent = 'Could not refresh (' + e.message + '); showing the state of ' + clock(Date.parse(status.now)) + ' UTC'
  }
}

// ---- completeness grid ----

// The cells come from two audits: the background auditor's (the last
// audit.lookback hours of every destination, in each status answer: free
// to read, redone every audit.interval) and the ones this page asks for
// (GET /api/v1/audit: the selected range, or one cell after its backfill),
// which read the destinations back: costly with many. Per cell, the newer
// audit wins.
const audits = new Map() // "org/dest" -> Map(hour ms -> {h, at})
let audited = null // {from, to}: the range of the last audit of every destination asked for
let auditCtl = null // its AbortController

function mergeHours (org, dest, hours, at) {
  const k = org + '/' + dest
  let m = audits.get(k)
  if (!m) audits.set(k, (m = new Map()))
  for (const h of hours || []) {
    const t = Date.parse(h.hour)
    const old = m.get(t)
    if (!old || old.at <= at) m.set(t, { h, at })
  }
}

function mergeStatusAudits () {
  const at = status.audit.last_run_at ? Date.parse(status.audit.last_run_at) : 0
  for (const d of status.destinations || []) if (d.audit) mergeHours(d.org, d.name, d.audit.hours, at)
}

function auditRange () {
  const hours = Number($('range-hours').value)
  const endIn = $('range-end').value
  let end = endIn ? Date.parse(endIn + 'Z') : Date.now()
  end = Math.floor(end / HOUR) * HOUR + HOUR // through the current hour
  return { from: end - hours * HOUR, to: end }
}

// autoAudit says whether the page audits the selected range by itself
// (on sign-in and every AUDIT_MS) or only when asked (many destinations).
const autoAudit = () => (status.destinations || []).length <= AUTO_AUDIT_MAX

// loadAudit audits [from, to) of one destination (org, dest) or of every one.
async function loadAudit (org, dest, from, to) {
  if (!from) ({ from, to } = auditRange())
  const one = !!dest
  if (!one) {
    if (auditCtl) auditCtl.abort()
    auditCtl = new AbortController()
    $('grid-status').textContent = 'Auditing ' + (to - from) / HOUR + ' hours of ' + plural((status.destinations || []).length, 'destination') + ' (reading them back)…'
  }
  const t0 = performance.now()
  const q = new URLSearchParams({ from: new Date(from).toISOString(), to: new Date(to).toISOString() })
  if (one) { q.set('org', org); q.set('destination', dest) }
  try {
    const r = await api('/api/v1/audit?' + q, one ? {} : { signal: auditCtl.signal })
    if (r.status === 429 && !one) {
      // A read key audits one range at a time per org (another tab, or a
      // colleague with the same org's key): say so, ask again when told.
      const wait = Math.max(1, Number(r.headers.get('Retry-After')) || 5)
      $('grid-status').textContent = await errText(r) + ' Asking again in ' + wait + ' s…'
      const ctl = auditCtl
      setTimeout(() => { if (key && auditCtl === ctl) loadAudit(org, dest, from, to) }, wait * 1000)
      return
    }
    if (!r.ok) throw new Error(await errText(r))
    const report = await r.json()
    const at = Date.parse(report.generated_at)
    for (const r of report.destinations || []) mergeHours(r.org, r.destination, r.hours, at)
    if (!one) {
      audited = { from, to }
      $('grid-status').textContent = 'Audited ' + (to - from) / HOUR + ' hours at ' + clock(at) + ' UTC in ' +
        ((performance.now() - t0) / 1000).toFixed(1) + ' s' + (autoAudit() ? '; again every ' + AUDIT_MS / 60000 + ' min.' : '.') + ' Select a cell for its numbers.'
    }
    renderGrid()
  } catch (e) {
    if (key && !(e.name === 'AbortError')) $('grid-status').innerHTML = errorHTML('The audit failed: ', e.message)
  }
}

function cellClass (h, known) {
  if (!h) return known ? 'empty' : 'na'
  if (!h.in_log) return 'gone'
  if (h.missing > 0) return 'missing'
  if (h.duplicated > 0) return 'dup'
  if (h.pending > 0) return 'pending'
  if (h.accepted === 0 && h.delivered === 0) return 'empty'
  return 'ok'
}
const CELL_TEXT = { missing: '−', dup: '+', pending: '…', gone: '?' }
const CELL_WORDS = { ok: 'complete', missing: 'missing events', dup: 'duplicated events', pending: 'pending', empty: 'no events', gone: 'no longer in the log', na: 'not audited' }
const CELL_RANK = { missing: 0, dup: 0, pending: 1 }

// known says whether an hour without a count was audited (and had no events).
function known (t) {
  const lookback = status.audit.lookback_seconds * 1000
  const bgFrom = status.audit.last_run_at ? Math.floor((Date.parse(status.audit.last_run_at) - lookback) / HOUR) * HOUR : Infinity
  return t >= bgFrom || (audited && t >= audited.from && t < audited.to)
}

function cellOf (org, dest, t) {
  const c = (audits.get(org + '/' + dest) || new Map()).get(t)
  return c ? c.h : null
}

function renderGrid () {
  if (!status) return
  const { from, to } = auditRange()
  const hours = []
  for (let t = from; t < to; t += HOUR) hours.push(t)
  const f = $('filter').value.trim().toLowerCase()
  const res = []
  for (const d of status.destinations || []) {
    if (f && !(d.org + '/' + d.name).toLowerCase().includes(f)) continue
    const cells = hours.map((t) => { const h = cellOf(d.org, d.name, t); return { t, h, c: cellClass(h, known(t)) } })
    res.push({ d, cells, rank: Math.min(2, ...cells.map((x) => CELL_RANK[x.c] ?? 2)) })
  }
  res.sort((a, b) => a.rank - b.rank || a.d.org.localeCompare(b.d.org) || a.d.name.localeCompare(b.d.name))
  const shown = gridAll ? res : res.slice(0, GRID_ROWS)
  let html = '<table class="grid"><caption class="sr">Audited hours by destination, oldest first</caption><thead><tr><th scope="col">Destination</th>'
  for (const t of hours) {
    const hr = new Date(t).getUTCHours()
    const label = hr === 0 ? new Date(t).toISOString().slice(5, 10) : hr % 3 === 0 ? String(hr).padStart(2, '0') : ''
    html += '<th scope="col" title="' + utc(t) + '"><span>' + label + '</span></th>'
  }
  html += '</tr></thead><tbody>'
  for (const { d, cells } of shown) {
    const name = esc(d.org + '/' + d.name)
    html += '<tr><th scope="row" title="' + name + '">' + name + '</th>'
    for (const { t, h, c } of cells) {
      const nums = h ? ': ' + fmtInt(h.accepted) + ' accepted, ' + fmtInt(h.delivered) + ' delivered, ' + fmtInt(h.pending) +
        ' pending, ' + fmtInt(h.missing) + ' missing, ' + fmtInt(h.duplicated) + ' duplicated' : ''
      html += '<td><button type="button" class="cell ' + c + '" data-org="' + esc(d.org) + '" data-dest="' + esc(d.name) +
        '" data-hour="' + new Date(t).toISOString() + '" data-kind="' + c + '" aria-label="' + name + ', ' +
        utc(t).slice(0, 16) + ' UTC, ' + CELL_WORDS[c] + nums + '">' + (CELL_TEXT[c] || '') + '</button></td>'
    }
    html += '</tr>'
  }
  html += '</tbody></table>'
  const g = $('grid')
  const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest('#grid button.cell')
  const keep = focused ? '#grid button.cell[data-org="' + CSS.escape(focused.dataset.org) + '"][data-dest="' + CSS.escape(focused.dataset.dest) +
    '"][data-hour="' + focused.dataset.hour + '"]' : null
  const scroll = g.scrollLeft
  const first = !g.querySelector('table')
  g.innerHTML = res.length ? html : '<p>No destination' + (f ? ' matches the filter' : '') + '.</p>'
  const table = g.querySelector('table')
  if (table) table.style.width = (12 + hours.length * 1.3) + 'rem' // a fixed layout (app.css) needs a width
  g.scrollLeft = first ? g.scrollWidth : scroll // at first the newest hours (on a narrow screen)
  if (keep && g.querySelector(keep)) g.querySelector(keep).focus() // a refresh keeps the keyboard's place
  $('grid-more').innerHTML = res.length > shown.length
    ? '<button type="button" id="grid-all">Show all ' + fmtInt(res.length) + ' destinations</button> (those with missing, duplicated or pending events come first)'
    : ''
  if (openCell) renderCellNumbers()
}

function cellHour () {
  return openCell ? cellOf(openCell.org, openCell.dest, openCell.hour) : null
}

function renderCellNumbers () {
  const h = cellHour()
  const el = $('cell-numbers')
  if (!el) return
  const f = (k) => '<div><dt>' + k + '</dt><dd data-field="' + k + '">' + fmtInt(h ? h[k] : 0) + '</dd></div>'
  el.innerHTML = '<dl class="numbers">' + ['accepted', 'delivered', 'pending', 'missing', 'duplicated'].map(f).join('') + '</dl>' +
    (h && !h.in_log ? '<p>The log no longer holds all of this hour (retention): its accepted, pending and missing are unknown.</p>' : '')
}

function showCell (btn) {
  openCell = { org: btn.dataset.org, dest: btn.dataset.dest, hour: Date.parse(btn.dataset.hour) }
  const p = $('cell')
  p.hidden = false
  p.innerHTML = '<h3>' + esc(openCell.org + ' / ' + openCell.dest) + ', ' + utc(openCell.hour).slice(0, 16) + '–' +
    clock(openCell.hour + HOUR).slice(0, 5) + ' UTC</h3><div id="cell-numbers"></div><div id="cell-action"></div>' +
    '<button type="button" id="cell-close">Close</button>'
  renderCellNumbers()
  const a = $('cell-action')
  if (admin()) {
    a.innerHTML = '<button type="button" id="bf-dry">Backfill this hour</button> <span class="hint">(a dry run counts the events first)</span><p id="bf-msg" aria-live="polite"></p>'
  } else {
    a.innerHTML = '<p>Backfill needs an admin key: this read key can only look.</p>'
  }
  p.focus()
}

// backfill runs POST /api/v1/backfill for the open cell's hour and
// destination; onProgress gets {done, total}. It returns the final line.
async function backfill (dryRun, onProgress) {
  const q = new URLSearchParams({
    from: new Date(openCell.hour).toISOString(),
    to: new Date(openCell.hour + HOUR).toISOString(),
    org: openCell.org,
    destination: openCell.dest
  })
  if (dryRun) q.set('dry_run', 'true')
  const r = await api('/api/v1/backfill?' + q, { method: 'POST' })
  if (!r.ok) throw new Error(await errText(r))
  let final = null
  await frames(r, '\n', (text) => {
    if (!text.trim()) return
    const line = JSON.parse(text)
    if (line.error) throw new Error(line.error)
    if (line.progress) onProgress(line.progress)
    if (line.results || line.audit) final = line
  })
  if (!final) throw new Error('the backfill ended without a result')
  return final
}

async function dryRun () {
  const msg = $('bf-msg')
  $('bf-dry').disabled = true
  msg.textContent = 'Dry run: counting the missing events…'
  try {
    const res = (await backfill(true, () => {})).results || []
    const n = res.reduce((s, b) => s + b.events, 0)
    const held = res.reduce((s, b) => s + b.held, 0)
    const pending = res.reduce((s, b) => s + b.pending, 0)
    let text = 'Dry run: ' + plural(n, 'event') + ' would be written.'
    if (held) text += ' ' + plural(held, 'missing event') + ' the pipeline has not passed yet will be delivered by it (not backfilled).'
    if (pending) text += ' ' + plural(pending, 'event') + ' not yet due (within the SLA).'
    msg.innerHTML = esc(text) + (n > 0 ? ' <button type="button" id="bf-run" data-events="' + n + '">Run the backfill (' + plural(n, 'event') + ')</button>' : ' Nothing to backfill.')
  } catch (e) {
    msg.textContent = 'The dry run failed: ' + e.message
  } finally {
    const b = $('bf-dry')
    if (b) b.disabled = false
  }
}

async function runBackfill () {
  const msg = $('bf-msg')
  msg.innerHTML = '<label for="bf-progress">Backfill progress</label> <progress id="bf-progress" max="1" value="0"></progress> <span id="bf-count">starting…</span>'
  $('bf-dry').disabled = true
  try {
    const fin = await backfill(false, (p) => {
      const bar = $('bf-progress')
      if (!bar) return
      bar.max = Math.max(p.total, 1)
      bar.value = p.done
      $('bf-count').textContent = fmtInt(p.done) + ' of ' + fmtInt(p.total) + ' events written'
    })
    const n = (fin.results || []).reduce((s, b) => s + (b.written ? b.events : 0), 0)
    msg.textContent = 'Backfill done: ' + plural(n, 'event') + ' written. Auditing the hour again…'
    await loadAudit(openCell.org, openCell.dest, openCell.hour, openCell.hour + HOUR)
    msg.textContent = 'Backfill done: ' + plural(n, 'event') + ' written; the numbers above are the new audit.'
    msg.dataset.done = 'true'
  } catch (e) {
    msg.textContent = 'The backfill failed: ' + e.message
  } finally {
    const b = $('bf-dry')
    if (b) b.disabled = false
  }
}

// ---- charts ----

const CHARTS = [
  ['accepted_events_per_second', 'Accepted events/s'],
  ['delivered_events_per_second', 'Delivered events/s per destination'],
  ['oldest_undelivered_seconds', 'Oldest undelivered age (s) per destination'],
  ['ingest_latency_p99_seconds', 'Ingest latency p99 (s)'],
  ['webhook_lag_seconds', 'Webhook lag (s)'],
  ['webhook_failures_per_second', 'Webhook failures/s'],
  ['webhook_dead_letters', 'Webhook dead letters']
]
const CHART_LINES = 6 // colours .c0 to .c5 in app.css

const num = (v) => (v == null ? '–' : Math.abs(v) >= 100 ? fmtInt(Math.round(v)) : (Math.round(v * 100) / 100).toString())
const labelOf = (s) => [s.org, s.destination || s.webhook].filter(Boolean).join('/') || 'all'

function chartSVG (list, step) {
  const W = 300
  const H = 100
  let max = 0
  for (const s of list) for (const v of s.points) if (v != null && v > max) max = v
  max = max || 1
  const n = Math.max(...list.map((s) => s.points.length), 2)
  let paths = ''
  list.forEach((s, k) => {
    let d = ''
    let pen = false
    s.points.forEach((v, i) => {
      if (v == null) { pen = false; return }
      const x = (i * W / (n - 1)).toFixed(1)
      const y = (H - v / max * H).toFixed(1)
      d += (pen ? 'L' : 'M') + x + ' ' + y + (pen ? '' : 'h0') // h0: a lone point shows as a dot
      pen = true
    })
    if (d) paths += '<path d="' + d + '" class="c' + k + '"/>'
  })
  const span = Math.round((n - 1) * step / 60)
  return '<svg viewBox="-2 -2 ' + (W + 4) + ' ' + (H + 4) + '" preserveAspectRatio="none" aria-hidden="true">' +
    '<line x1="0" y1="' + H + '" x2="' + W + '" y2="' + H + '" class="axis"/>' + paths + '</svg>' +
    '<div class="ticks"><span>max ' + num(max) + '</span><span>−' + span + ' min … now</span></div>'
}

async function loadSeries () {
  if (document.hidden && $('chart-list').firstChild) return
  let r
  try {
    r = await api('/api/v1/series')
  } catch (e) {
    if (key) $('charts-status').textContent = 'Could not load the charts: ' + e.message
    return
  }
  if (r.status === 404) {
    $('charts-status').textContent = 'No data: this server does not serve /api/v1/series.'
    $('chart-list').textContent = ''
    return
  }
  if (!r.ok) {
    $('charts-status').textContent = 'Could not load the charts: ' + await errText(r)
    return
  }
  const data = await r.json()
  $('charts-status').textContent = 'Every ' + data.step_seconds + ' s, up to ' + clock(Date.parse(data.end)) + ' UTC.'
  let html = ''
  for (const [name, title] of CHARTS) {
    const all = (data.series || []).filter((s) => s.name === name)
    if (!all.length) continue
    const peak = (s) => Math.max(0, ...s.points.filter((v) => v != null))
    all.sort((a, b) => peak(b) - peak(a) || labelOf(a).localeCompare(labelOf(b)))
    const list = all.slice(0, CHART_LINES)
    const last = (s) => { for (let i = s.points.length - 1; i >= 0; i--) if (s.points[i] != null) return s.points[i]; return null }
    const legend = list.map((s, k) => '<li><span class="swatch c' + k + '"></span>' + esc(labelOf(s)) + ': <b>' + num(last(s)) + '</b> now</li>').join('')
    html += '<figure class="chart" data-series="' + name + '"><figcaption>' + esc(title) + '</figcaption>' + chartSVG(list, data.step_seconds) +
      '<ul class="chart-legend">' + legend + '</ul>' +
      (all.length > list.length ? '<p class="hint">' + (all.length - list.length) + ' more not drawn (the highest ' + list.length + ' are)</p>' : '') + '</figure>'
  }
  $('chart-list').innerHTML = html || '<p>No series yet.</p>'
}

// ---- live tail ----

function stopLive () {
  if (live) live.abort()
  live = null
  $('live-toggle').textContent = 'Start'
}

async function startLive () {
  const q = new URLSearchParams()
  const add = (k, id) => { const v = $(id).value.trim(); if (v) q.set(k, v) }
  if (admin()) add('org', 'live-org')
  add('event', 'live-event')
  add('type', 'live-type')
  add('device', 'live-device')
  const ctl = new AbortController()
  live = ctl
  $('live-toggle').textContent = 'Stop'
  const st = $('live-status')
  st.textContent = 'Connecting…'
  let count = 0
  try {
    const r = await authFetch('/v1/live?' + q, { signal: ctl.signal, headers: { Accept: 'text/event-stream' } })
    if (!r.ok) {
      st.textContent = 'The live tail was refused: ' + await errText(r)
      if (live === ctl) stopLive()
      return
    }
    await frames(r, '\n\n', (frame) => {
      let ev = 'message'
      let data = ''
      for (const line of frame.split('\n')) {
        if (line.startsWith(': subscribed')) st.textContent = 'Live: waiting for events (newest first).'
        else if (line.startsWith('event: ')) ev = line.slice(7)
        else if (line.startsWith('data: ')) data += line.slice(6)
      }
      if (ev === 'event' && data) {
        count++
        addTail(JSON.parse(data))
        st.textContent = 'Live: ' + plural(count, 'event') + ' (newest first).'
      } else if (ev === 'dropped' && data) {
        addNote('This tab fell behind: ' + plural(JSON.parse(data).dropped, 'event') + ' skipped.')
      }
    })
    st.textContent = 'The live tail ended (the server closed it).'
  } catch (e) {
    st.textContent = ctl.signal.aborted ? 'Stopped after ' + plural(count, 'event') + '.' : 'The live tail ended: ' + e.message
  }
  if (live === ctl) stopLive()
}

function addTail (e) {
  const li = document.createElement('li')
  const t = e.received_at ? Date.parse(e.received_at) : Date.now()
  li.innerHTML = '<time datetime="' + esc(e.received_at) + '">' + clock(t) + '</time> <span class="type">' + esc(e.type) + '</span> ' +
    '<b class="name">' + esc(e.event_name || '') + '</b> <span class="device">' + esc(e.device_id) + '</span>' +
    (admin() ? ' <span class="org">' + esc(e.org_id) + '</span>' : '') +
    '<details><summary>JSON</summary><pre></pre></details>'
  li.querySelector('pre').textContent = JSON.stringify(e, null, 2)
  pushTail(li)
}

function addNote (text) {
  const li = document.createElement('li')
  li.className = 'note'
  li.textContent = text
  pushTail(li)
}

function pushTail (li) {
  const ol = $('tail')
  ol.prepend(li)
  while (ol.children.length > TAIL_ROWS) ol.lastChild.remove()
}

// ---- wiring ----

document.addEventListener('DOMContentLoaded', () => {
  $('signin-form').addEventListener('submit', (e) => {
    e.preventDefault()
    const k = $('key').value.trim()
    if (k) signIn(k, false)
  })
  $('signout').addEventListener('click', () => signOut('Signed out.'))
  $('filter').addEventListener('input', () => { if (status) renderStatus() })
  $('range-hours').addEventListener('change', renderGrid)
  $('range-end').addEventListener('change', renderGrid)
  $('range-form').addEventListener('submit', (e) => { e.preventDefault(); if (status) loadAudit() })
  $('grid').addEventListener('click', (e) => {
    const b = e.target.closest('button.cell')
    if (b) showCell(b)
  })
  $('grid-more').addEventListener('click', (e) => {
    if (e.target.id === 'grid-all') { gridAll = true; renderGrid() }
  })
  $('cell').addEventListener('click', (e) => {
    if (e.target.id === 'bf-dry') dryRun()
    else if (e.target.id === 'bf-run') runBackfill()
    else if (e.target.id === 'cell-close') { openCell = null; $('cell').hidden = true }
  })
  $('live-form').addEventListener('submit', (e) => {
    e.preventDefault()
    if (live) stopLive()
    else startLive()
  })
  const k = sessionStorage.getItem(KEY_ITEM)
  if (k) signIn(k, true)
  else $('key').focus()
})
