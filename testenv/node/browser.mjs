#!/usr/bin/env node
// browser.mjs — opens pages in a real, headless Chromium (Debian's, driven by
// playwright-core: no browser is ever downloaded) and keeps them open, so that
// a browser SDK on the page (analytics.js) can send and retry as in a user's
// browser.
//
//   node browser.mjs --chromium /usr/bin/chromium --url URL [--url URL ...]
//        [--timeout-ms T]
//
// Each page must set window.tidemarkTest = {ids: [...], errors: [...]} once it
// has made its calls (ids: the messageIds of its events; errors: what the SDK
// reported), or {fatal: "..."} when it could not. When every page has done so,
// ONE JSON line goes to stdout:
//   {"pages":[{"url":..,"ids":[..]}, ...]}
// Then the browser stays open (the SDK keeps retrying) until stdin closes;
// then a second line, and exit 0:
//   {"errors":[".."],"console":[".."]}
// errors: what the pages' SDKs reported since; console: the pages' console
// messages, page errors and failed requests (a CORS refusal shows there).
// Exits 1 (details on stderr) when Chromium cannot start, a page fails to
// load or reports fatal, or a page has no ids within the timeout; 2 on bad
// arguments.

import { launch } from './chromium.mjs'
import { cli } from './cli.mjs'

const { values, usage, intArg } = cli('browser.mjs', '--chromium PATH --url URL [--url URL ...] [--timeout-ms T]', {
  chromium: { type: 'string' },
  url: { type: 'string', multiple: true },
  'timeout-ms': { type: 'string', default: '60000' },
})
if (!values.chromium) usage('--chromium is required')
if (!values.url || values.url.length === 0) usage('--url is required')
const timeoutMs = intArg('timeout-ms', 1)

const console_ = []
let browser
const fail = async (msg) => {
  process.stderr.write(`browser.mjs: ${msg}\n  ${console_.slice(0, 50).join('\n  ')}\n`)
  if (browser) await browser.close()
  process.exit(1)
}

try {
  browser = await launch(values.chromium)
} catch (err) {
  await fail(`cannot start Chromium ${values.chromium}: ${err.message}`)
}
const { ctx } = browser

const pages = []
for (const url of values.url) {
  const page = await ctx.newPage()
  page.on('console', (m) => console_.push(`${url} console.${m.type()}: ${m.text()}`))
  page.on('pageerror', (e) => console_.push(`${url} page error: ${e.message}`))
  page.on('requestfailed', (r) => console_.push(`${url} request failed: ${r.method()} ${r.url()}: ${r.failure()?.errorText}`))
  try {
    await page.goto(url, { timeout: timeoutMs })
    await page.waitForFunction(() => window.tidemarkTest && (window.tidemarkTest.ids || window.tidemarkTest.fatal), null, { timeout: timeoutMs })
  } catch (err) {
    await fail(`${url}: ${err.message}`)
  }
  const t = await page.evaluate(() => window.tidemarkTest)
  if (t.fatal) await fail(`${url}: ${t.fatal}`)
  pages.push({ url, page, ids: t.ids })
}
process.stdout.write(JSON.stringify({ pages: pages.map(({ url, ids }) => ({ url, ids })) }) + '\n')

// Keep retrying (in the pages) until the test is done with us.
process.stdin.resume()
await new Promise((resolve) => process.stdin.on('end', resolve).on('close', resolve))

const errors = []
for (const { url, page } of pages) {
  const t = await page.evaluate(() => window.tidemarkTest).catch((e) => ({ errors: [`evaluate: ${e.message}`] }))
  for (const e of t.errors || []) errors.push(`${url}: ${e}`)
}
await browser.close()
process.stdout.write(JSON.stringify({ errors, console: console_ }) + '\n')
process.exit(0)
