#!/usr/bin/env node
// duckdb.mjs — runs SQL with DuckDB (the @duckdb/node-api package, whose
// prebuilt engine ships inside the npm package) in a given working directory,
// the way a user queries the lake from the README.
//
//   node duckdb.mjs --cwd DIR --sql='SELECT ...; SELECT ...'
//
// Statements are separated by ";" at line ends. Prints one JSON line per
// statement: {"sql": "...", "rows": [{col: value, ...}, ...]} (values as JSON;
// BIGINT as strings). Exits 1 on any SQL error, 2 on bad arguments.
import { parseArgs } from 'node:util'
import { DuckDBInstance } from '@duckdb/node-api'

let values
try {
  ;({ values } = parseArgs({ options: { cwd: { type: 'string' }, sql: { type: 'string' } }, strict: true }))
} catch (err) {
  process.stderr.write(`duckdb.mjs: ${err.message}\n`)
  process.exit(2)
}
if (!values.cwd || !values.sql) {
  process.stderr.write('usage: node duckdb.mjs --cwd DIR --sql SQL\n')
  process.exit(2)
}
process.chdir(values.cwd)
const statements = values.sql.split(/;\s*\n/).map((s) => s.replace(/;\s*$/, '').trim()).filter((s) => s && !/^(--[^\n]*\n?)*$/.test(s))
try {
  const inst = await DuckDBInstance.create(':memory:')
  const con = await inst.connect()
  for (const sql of statements) {
    const r = await con.runAndReadAll(sql)
    process.stdout.write(JSON.stringify({ sql, rows: r.getRowObjectsJson() }) + '\n')
  }
} catch (err) {
  process.stderr.write(`duckdb.mjs: ${err.message}\n`)
  process.exit(1)
}
