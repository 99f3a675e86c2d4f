#!/usr/bin/env node
// page.mjs — one page in a real, headless Chromium (Debian's, driven by
// playwright-core: no browser is ever downloaded), steered by a test one
// command at a time, so that the test can change the world (stop a server,
// delete files) between looking at the page.
//
//   node page.mjs --chromium /usr/bin/chromium
//
// Reads one JSON command per line on stdin and answers each with one JSON
// line on stdout, in order: {"ok":true,"value":...} or {"ok":false,"error":"..."}.
// Commands ({"op": ..., fields}; timeout_ms defaults to 30000):
//   goto {url}                      load url and wait for its load event
//   viewport {width, height}        resize the page
//   fill {sel, value}               type value into the field sel (a CSS selector)
//   click {sel}                     click the element sel
//   press {sel, key}                focus sel and press key ("Enter", "Tab")
//   wait {js, timeout_ms}           wait until the expression js is truthy; value: its value
//   eval {js}                       value: the expression js's value (JSON)
//   content {}                      value: the page's HTML as it is now
//   screenshot {path, full}         write a PNG of the page (full: the whole page)
//   log {}                          value: {console: [..], requests: [..]}: the page's console
//                                   messages and errors, and every URL it requested
// Exits 0 when stdin closes; 1 when Chromium cannot start.

import { createInterface } from 'node:readline'
import { launch } from './chromium.mjs'
import { cli } from './cli.mjs'

const { values, usage } = cli('page.mjs', '--chromium PATH', { chromium: { type: 'string' } })
if (!values.chromium) usage('--chromium is required')

let browser
try {
  browser = await launch(values.chromium, { viewport: { width: 1280, height: 900 } })
} catch (err) {
  process.stderr.write(`page.mjs: cannot start Chromium ${values.chromium}: ${err.message}\n`)
  process.exit(1)
}
const { ctx } = browser
const page = ctx.pages()[0] || await ctx.newPage()
const consoleLines = []
const requests = []
page.on('console', (m) => consoleLines.push(`console.${m.type()}: ${m.text()}`))
page.on('pageerror', (e) => consoleLines.push(`page error: ${e.message}`))
page.on('requestfailed', (r) => consoleLines.push(`request failed: ${r.method()} ${r.url()}: ${r.failure()?.errorText}`))
page.on('request', (r) => requests.push(`${r.method()} ${r.url()}`))

const ops = {
  goto: async (c, timeout) => { await page.goto(c.url, { timeout }) },
  viewport: async (c) => { await page.setViewportSize({ width: c.width, height: c.height }) },
  fill: async (c, timeout) => { await page.fill(c.sel, c.value, { timeout }) },
  click: async (c, timeout) => { await page.click(c.sel, { timeout }) },
  press: async (c, timeout) => { await page.press(c.sel, c.key, { timeout }) },
  wait: async (c, timeout) => {
    // Polled from here: page.waitForFunction evaluates a string with eval()
    // in the page, which the page's Content-Security-Policy forbids.
    const end = Date.now() + timeout
    for (;;) {
      const v = await page.evaluate(c.js)
      if (v) return v
      if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${c.js}`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  },
  eval: async (c) => page.evaluate(c.js),
  content: async () => page.content(),
  screenshot: async (c, timeout) => { await page.screenshot({ path: c.path, fullPage: !!c.full, timeout }) },
  log: async () => ({ console: consoleLines, requests }),
}

const lines = createInterface({ input: process.stdin })
for await (const line of lines) {
  if (!line.trim()) continue
  let answer
  try {
    const c = JSON.parse(line)
    const op = ops[c.op]
    if (!op) throw new Error(`unknown op ${JSON.stringify(c.op)}`)
    const value = await op(c, c.timeout_ms || 30000)
    answer = { ok: true, value: value === undefined ? null : value }
  } catch (err) {
    answer = { ok: false, error: err.message }
  }
  process.stdout.write(JSON.stringify(answer) + '\n')
}
await browser.close()
process.exit(0)
