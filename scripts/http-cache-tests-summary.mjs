// Summarises http-cache-tests results (JSON from its cli.mjs) the way cache-tests.fyi does:
// per test kind (required, optimal, check), with a test whose dependencies did not pass counted
// apart. Usage: node http-cache-tests-summary.mjs <package dir> <name.json>...
import fs from 'fs'
import path from 'path'
import { pathToFileURL } from 'url'

const [pkg, ...files] = process.argv.slice(2)
const suites = (await import(pathToFileURL(path.join(pkg, 'tests/index.mjs')))).default
suites.push((await import(pathToFileURL(path.join(pkg, 'tests/surrogate-control.mjs')))).default)
const tests = new Map()
for (const suite of suites) for (const test of suite.tests) tests.set(test.id, test)

function outcome (results, id, seen = new Set()) {
  const test = tests.get(id)
  const result = results[id]
  if (result === undefined) return 'untested'
  for (const dep of test.depends_on || []) {
    if (seen.has(dep)) continue
    seen.add(dep)
    if (!['pass', 'yes'].includes(outcome(results, dep, seen))) return 'dependency_fail'
  }
  if (Array.isArray(result) && result[0] === 'Setup') return 'setup_fail'
  const kind = test.kind || 'required'
  if (kind === 'check') return result === true ? 'yes' : 'no'
  if (result === true) return 'pass'
  return kind === 'optimal' ? 'optional_fail' : 'fail'
}

for (const file of files) {
  const results = JSON.parse(fs.readFileSync(file, 'utf8'))
  const byKind = {}
  let passed = 0
  let total = 0
  for (const [id, test] of tests) {
    const kind = test.kind || 'required'
    const o = outcome(results, id)
    byKind[kind] = byKind[kind] || {}
    byKind[kind][o] = (byKind[kind][o] || 0) + 1
    if (o === 'untested') continue
    total++
    if (o === 'pass' || o === 'yes') passed++
  }
  console.log(`${path.basename(file, '.json')}: ${passed} of ${total} tests pass (required: ${byKind.required?.pass || 0} of ${Object.values(byKind.required || {}).reduce((a, b) => a + b, 0)}, optimal: ${byKind.optimal?.pass || 0} of ${Object.values(byKind.optimal || {}).reduce((a, b) => a + b, 0)}, checks answered yes: ${byKind.check?.yes || 0} of ${Object.values(byKind.check || {}).reduce((a, b) => a + b, 0)})`)
  console.log(`  by kind: ${JSON.stringify(byKind)}`)
}
