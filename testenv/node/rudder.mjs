#!/usr/bin/env node
// rudder.mjs — sends events to a collector with the real RudderStack Node SDK
// (@rudderstack/rudder-sdk-node), as a customer's server would. The SDK sends
// originalTimestamp and sentAt (never timestamp, unless the caller sets one)
// and gzips its batches.
//
//   node rudder.mjs --host http://127.0.0.1:PORT --write-key KEY --events N
//        [--prefix P] [--clock-offset-ms MS] [--timeout-ms T]
//
// Event i (0..N-1) has messageId "P-i" and anonymousId "P-dev-(i%3)"; i == 0
// is a page, the others are tracks "Clicked" with properties {seq: i}.
//
// --clock-offset-ms shifts the clock the SDK sees (Date and Date.now) by MS
// milliseconds, as on a device whose clock is wrong: the collector must
// correct event_time for it from sentAt. The SDK itself is unchanged.
//
// On success prints ONE JSON line to stdout and exits 0:
//   {"sent":["P-0",...],"count":N,"startMs":..,"endMs":..}
// startMs/endMs are the REAL clock (without the offset) before the first call
// and after the last delivery. Exits 1 (details on stderr) if any call's
// callback reported an error or not every call was confirmed before the
// timeout; 2 on bad arguments.

import { cli } from './cli.mjs'

const { values, usage, intArg } = cli('rudder.mjs',
  '--host URL --write-key KEY --events N [--prefix P] [--clock-offset-ms MS] [--timeout-ms T]', {
    host: { type: 'string' },
    'write-key': { type: 'string' },
    events: { type: 'string' },
    prefix: { type: 'string', default: 'r' },
    'clock-offset-ms': { type: 'string', default: '0' },
    'timeout-ms': { type: 'string', default: '60000' },
  })

if (!values.host) usage('--host is required')
if (!values['write-key']) usage('--write-key is required')
const events = intArg('events', 1)
const offset = intArg('clock-offset-ms', Number.MIN_SAFE_INTEGER)
const timeoutMs = intArg('timeout-ms', 1)
const prefix = values.prefix

// The device's wrong clock, installed before the SDK is loaded.
const RealDate = Date
const realNow = () => RealDate.now()
if (offset !== 0) {
  globalThis.Date = class extends RealDate {
    constructor(...args) {
      if (args.length === 0) super(realNow() + offset)
      else super(...args)
    }
    static now() { return realNow() + offset }
  }
}
const { default: Analytics } = await import('@rudderstack/rudder-sdk-node')

const client = new Analytics(values['write-key'], {
  dataPlaneUrl: values.host,
  flushAt: 10,
  flushInterval: 200,
  logLevel: 'error',
})

const errors = []
const sent = []
let confirmed = 0
const callback = (id) => (err) => {
  if (err) errors.push(`${id}: ${err.message || err}`)
  else confirmed++
}

const startMs = realNow()
for (let i = 0; i < events; i++) {
  const messageId = `${prefix}-${i}`
  const anonymousId = `${prefix}-dev-${i % 3}`
  if (i === 0) {
    client.page({ anonymousId, messageId, name: 'Home', properties: { seq: i, url: 'https://example.test/' } }, callback(messageId))
  } else {
    client.track({ anonymousId, messageId, event: 'Clicked', properties: { seq: i } }, callback(messageId))
  }
  sent.push(messageId)
}

const deadline = realNow() + timeoutMs
await client.flush()
while (confirmed + errors.length < sent.length && realNow() < deadline) {
  await new Promise((r) => setTimeout(r, 50))
  await client.flush()
}
const endMs = realNow()

if (confirmed !== sent.length) {
  errors.push(`only ${confirmed} of ${sent.length} calls were confirmed delivered (timeout ${timeoutMs} ms?)`)
}
if (errors.length > 0) {
  process.stderr.write(`rudder.mjs: ${errors.length} error(s):\n  ${errors.slice(0, 20).join('\n  ')}\n`)
  process.exit(1)
}
process.stdout.write(JSON.stringify({ sent, count: sent.length, startMs, endMs }) + '\n')
process.exit(0)
