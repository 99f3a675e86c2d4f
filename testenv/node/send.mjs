#!/usr/bin/env node
// send.mjs — sends events to a collector with the real Segment Node SDK
// (@segment/analytics-node), as a customer's server would.
//
//   node send.mjs --host http://127.0.0.1:PORT --write-key KEY \
//        --devices N --events-per-device M [--prefix P] [--flush-at K]
//        [--max-retries R] [--path /v1/batch] [--timeout-ms T]
//
// Each device d (0..N-1) has anonymousId "P-dev-d" and makes exactly M calls,
// i = 0..M-1, with messageId "P-d-i" (deterministic, so tests can retry/dedupe):
//   i == 0            page     (name "Home",  url https://example.test/)
//   i == 1            identify (userId "P-user-d", traits {device: d})
//   i >= 2, i%4 == 0  page     (name "Page i", url https://example.test/p/i)
//   otherwise         track    (event "Clicked", properties {seq: i, device: d})
// Calls are interleaved across devices (i outer, d inner), so a batch holds
// several devices. properties/traits always carry {seq: i, device: d}.
//
// Defaults: --prefix "m", --flush-at 20 (events per HTTP batch), --max-retries 3,
// --path "/v1/batch" (the SDK's default), --timeout-ms 60000 for closeAndFlush.
//
// On success prints ONE JSON line to stdout and exits 0:
//   {"sent":["m-0-0","m-1-0",...],"count":N*M,"types":{"page":..,"identify":..,"track":..},"requests":R}
// "sent" is in call order; "requests" counts HTTP requests the SDK made
// (retries included).
// Exits 1 (details on stderr) if the SDK emitted any 'error' event, any call's
// callback reported a failure, any call was dropped after close, or not every
// call was confirmed delivered (HTTP 2xx) before the timeout. Exits 2 on bad args.

import { Analytics } from '@segment/analytics-node'
import { cli } from './cli.mjs'

const { values, usage, intArg } = cli('send.mjs',
  '--host URL --write-key KEY --devices N --events-per-device M ' +
  '[--prefix P] [--flush-at K] [--max-retries R] [--path /v1/batch] [--timeout-ms T]', {
    host: { type: 'string' },
    'write-key': { type: 'string' },
    devices: { type: 'string' },
    'events-per-device': { type: 'string' },
    prefix: { type: 'string', default: 'm' },
    'flush-at': { type: 'string', default: '20' },
    'max-retries': { type: 'string', default: '3' },
    path: { type: 'string' },
    'timeout-ms': { type: 'string', default: '60000' },
  })

if (!values.host) usage('--host is required')
if (!values['write-key']) usage('--write-key is required')
const devices = intArg('devices', 1)
const perDevice = intArg('events-per-device', 1)
const flushAt = intArg('flush-at', 1)
const maxRetries = intArg('max-retries', 0)
const timeoutMs = intArg('timeout-ms', 1)
const prefix = values.prefix

const analytics = new Analytics({
  writeKey: values['write-key'],
  host: values.host,
  ...(values.path ? { path: values.path } : {}),
  flushAt,
  maxRetries,
  flushInterval: 200,
  httpRequestTimeout: 10000,
})

// fmtErr renders an error on one line, with its cause (fetch errors keep the
// real reason, e.g. ECONNREFUSED, in .cause).
function fmtErr(err) {
  if (err === null || err === undefined) return String(err)
  if (typeof err !== 'object') return String(err)
  let s = err.message || String(err)
  if (err.cause) s += ` (cause: ${fmtErr(err.cause)})`
  return s
}

const errors = []
let requests = 0
analytics.on('error', (e) => {
  errors.push(`SDK error ${e && e.code}: ${fmtErr(e && e.reason)}`)
})
analytics.on('call_after_close', (ev) => {
  errors.push(`call after close: ${ev && ev.messageId}`)
})
analytics.on('http_request', () => {
  requests++
})
analytics.on('http_response', (r) => {
  if (r.status < 200 || r.status >= 300) {
    // The SDK counts 3xx as delivered; tidemark must answer 2xx.
    process.stderr.write(`send.mjs: HTTP ${r.status} ${r.statusText} from ${r.url}\n`)
    if (r.status >= 300 && r.status < 400) errors.push(`HTTP ${r.status} treated as success by the SDK`)
  }
})

const sent = []
const types = { page: 0, identify: 0, track: 0 }
let confirmed = 0
const callback = (id) => (err) => {
  if (err) errors.push(`${id}: ${fmtErr(err)}`)
  else confirmed++
}

for (let i = 0; i < perDevice; i++) {
  for (let d = 0; d < devices; d++) {
    const messageId = `${prefix}-${d}-${i}`
    const anonymousId = `${prefix}-dev-${d}`
    const props = { seq: i, device: d }
    if (i === 0) {
      analytics.page({ anonymousId, messageId, name: 'Home', properties: { ...props, url: 'https://example.test/', path: '/' } }, callback(messageId))
      types.page++
    } else if (i === 1) {
      analytics.identify({ anonymousId, userId: `${prefix}-user-${d}`, messageId, traits: props }, callback(messageId))
      types.identify++
    } else if (i % 4 === 0) {
      analytics.page({ anonymousId, messageId, name: `Page ${i}`, properties: { ...props, url: `https://example.test/p/${i}`, path: `/p/${i}` } }, callback(messageId))
      types.page++
    } else {
      analytics.track({ anonymousId, messageId, event: 'Clicked', properties: props }, callback(messageId))
      types.track++
    }
    sent.push(messageId)
  }
}

await analytics.closeAndFlush({ timeout: timeoutMs })

if (confirmed !== sent.length) {
  errors.push(`only ${confirmed} of ${sent.length} calls were confirmed delivered (timeout ${timeoutMs} ms?)`)
}
if (errors.length > 0) {
  const shown = errors.slice(0, 20)
  process.stderr.write(`send.mjs: ${errors.length} error(s):\n  ${shown.join('\n  ')}\n`)
  process.exit(1)
}
process.stdout.write(JSON.stringify({ sent, count: sent.length, types, requests }) + '\n')
