// cli.mjs — the command-line parsing the harness scripts share: strict
// --name value options, exit 2 with a usage line on a bad one.

import { parseArgs } from 'node:util'

// cli parses process.argv with options (node:util parseArgs options) and
// returns {values, usage, intArg}: usage(msg) prints msg and the usage line
// and exits 2; intArg(name, min) is the required option name as an integer
// >= min.
export function cli(script, usageLine, options) {
  function usage(msg) {
    process.stderr.write(`${script}: ${msg}\nusage: node ${script} ${usageLine}\n`)
    process.exit(2)
  }
  let values
  try {
    ;({ values } = parseArgs({ options, strict: true, allowPositionals: false }))
  } catch (err) {
    usage(err.message)
  }
  function intArg(name, min) {
    const raw = values[name]
    if (raw === undefined) usage(`--${name} is required`)
    const n = Number(raw)
    if (!Number.isInteger(n) || n < min) usage(`--${name} must be an integer >= ${min}, got ${JSON.stringify(raw)}`)
    return n
  }
  return { values, usage, intArg }
}
