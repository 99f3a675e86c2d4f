#!/usr/bin/env node
// readparquet.mjs DIR
//
// The independent Parquet reader for tidemark's tests: it shares no code with
// tidemark's writer (hyparquet, pure JavaScript). It finds every *.parquet file
// under DIR (recursively; any path with a "_manifests" component or a name
// starting with "." or "_" is skipped, as Hive-style readers do), reads all rows
// and prints one JSON object per line, files in sorted relative-path order and
// rows in file order:
//
//   {"file":"events/dt=2026-01-02/hr=03/p00-...parquet","row":{...}}
//
// "file" is the path relative to DIR with "/" separators.
//
// Value encoding in "row":
//   - INT64 / UINT64 (JS BigInt) are printed as bare JSON integers with every
//     digit kept (not through float64), so Go can decode them exactly.
//   - TIMESTAMP columns (MILLIS, MICROS, NANOS, and INT96) are ISO-8601 UTC
//     strings with the column's full precision and fixed width:
//     MILLIS "2026-01-02T03:04:05.123Z", MICROS "2026-01-02T03:04:05.123456Z",
//     NANOS  "2026-01-02T03:04:05.123456789Z" (parse with time.RFC3339Nano).
//     Timestamps not adjusted to UTC are printed the same way (with "Z").
//   - DATE columns are "YYYY-MM-DD".
//   - Strings (and un-annotated BYTE_ARRAY, decoded as UTF-8) are JSON strings;
//     JSON columns are parsed and embedded; other binary values are base64.
//   - Lists are arrays, maps and structs are objects, nulls are null.
//   - NaN / +-Infinity floats are the strings "NaN", "Infinity", "-Infinity".
//
// Compression: uncompressed, SNAPPY, GZIP, ZSTD, BROTLI, LZ4, LZ4_RAW
// (hyparquet-compressors). Exit code is non-zero on any read error.

import { readdir } from 'node:fs/promises'
import path from 'node:path'
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet'
import { compressors } from 'hyparquet-compressors'

function pad(n, w) {
  return String(n).padStart(w, '0')
}

// isoFrom formats an integer count of `unitsPerSecond` since the Unix epoch as
// an ISO-8601 UTC string with `digits` fractional digits. BigInt arithmetic
// keeps full precision (JS Date only holds milliseconds).
function isoFrom(value, unitsPerSecond, digits) {
  const v = BigInt(value)
  const u = BigInt(unitsPerSecond)
  let secs = v / u
  let frac = v % u
  if (frac < 0n) {
    frac += u
    secs -= 1n
  }
  const d = new Date(Number(secs) * 1000)
  const base =
    `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}` +
    `T${pad(d.getUTCHours(), 2)}:${pad(d.getUTCMinutes(), 2)}:${pad(d.getUTCSeconds(), 2)}`
  return `${base}.${frac.toString().padStart(digits, '0')}Z`
}

const parsers = {
  timestampFromMilliseconds: (v) => isoFrom(v, 1000, 3),
  timestampFromMicroseconds: (v) => isoFrom(v, 1000000, 6),
  timestampFromNanoseconds: (v) => isoFrom(v, 1000000000, 9),
  dateFromDays: (days) => {
    const d = new Date(Number(days) * 86400000)
    return `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}`
  },
}

// toJSON serializes a decoded value. It is hand-written because JSON.stringify
// cannot print BigInt as a number.
function toJSON(v) {
  if (v === null || v === undefined) return 'null'
  switch (typeof v) {
    case 'bigint':
      return v.toString()
    case 'number':
      if (Number.isFinite(v)) return JSON.stringify(v)
      return JSON.stringify(String(v))
    case 'string':
    case 'boolean':
      return JSON.stringify(v)
    case 'object':
      break
    default:
      return JSON.stringify(String(v))
  }
  if (v instanceof Date) return JSON.stringify(v.toISOString())
  if (v instanceof Uint8Array) return JSON.stringify(Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64'))
  if (ArrayBuffer.isView(v) || Array.isArray(v)) return '[' + Array.from(v, toJSON).join(',') + ']'
  if (v instanceof Map) v = Object.fromEntries(v)
  const parts = []
  for (const [k, x] of Object.entries(v)) {
    if (x === undefined) continue
    parts.push(JSON.stringify(k) + ':' + toJSON(x))
  }
  return '{' + parts.join(',') + '}'
}

async function findParquet(root) {
  const out = []
  async function walk(dir) {
    const entries = await readdir(dir, { withFileTypes: true })
    for (const e of entries) {
      if (e.name === '_manifests' || e.name.startsWith('.') || e.name.startsWith('_')) continue
      const full = path.join(dir, e.name)
      if (e.isDirectory()) await walk(full)
      else if (e.isFile() && e.name.endsWith('.parquet')) out.push(full)
    }
  }
  await walk(root)
  const rel = out.map((f) => path.relative(root, f).split(path.sep).join('/'))
  rel.sort()
  return rel
}

async function main() {
  const args = process.argv.slice(2)
  if (args.length !== 1 || args[0].startsWith('-')) {
    process.stderr.write('usage: node readparquet.mjs DIR\n')
    process.exit(2)
  }
  const root = path.resolve(args[0])
  const files = await findParquet(root)
  const out = []
  for (const rel of files) {
    const full = path.join(root, ...rel.split('/'))
    let rows
    try {
      const file = await asyncBufferFromFile(full)
      const metadata = await parquetMetadataAsync(file)
      rows = await parquetReadObjects({ file, metadata, compressors, parsers, rowFormat: 'object' })
    } catch (err) {
      throw new Error(`reading ${rel}: ${err && err.stack ? err.stack : err}`)
    }
    for (const row of rows) {
      out.push('{"file":' + JSON.stringify(rel) + ',"row":' + toJSON(row) + '}\n')
      if (out.length >= 1000) {
        await write(out.join(''))
        out.length = 0
      }
    }
  }
  await write(out.join(''))
}

function write(s) {
  if (!s) return Promise.resolve()
  return new Promise((resolve, reject) => {
    process.stdout.write(s, (err) => (err ? reject(err) : resolve()))
  })
}

main().catch((err) => {
  process.stderr.write(`readparquet: ${err && err.stack ? err.stack : err}\n`)
  process.exit(1)
})
