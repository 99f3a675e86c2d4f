// chromium.mjs — starts the system's Chromium (Debian's, given by path) with
// playwright-core, which never downloads a browser: a fresh profile, and the
// flags that work on a machine without network (no background requests to
// Google's services, no sandbox as root).

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium } from 'playwright-core'

// launch returns {ctx, close}: a persistent browser context and the function
// that closes it and removes its profile. It throws when Chromium cannot start.
export async function launch(executablePath, options = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'tidemark-chromium-'))
  const close = async (ctx) => {
    if (ctx) await ctx.close().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
  try {
    const ctx = await chromium.launchPersistentContext(dir, {
      executablePath,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--disable-quic'],
      ...options,
    })
    return { ctx, close: () => close(ctx) }
  } catch (err) {
    await close(null)
    throw err
  }
}
