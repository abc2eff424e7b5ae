// Runs the reference Bluesky PDS (@atproto/pds, with its OAuth authorization
// server) and an in-memory PLC directory (@did-plc/server) in one Node
// process, listening on 127.0.0.1 only.
//
// start.sh copies this file next to the node_modules that install.sh built
// (outside the repository) and runs it with the Node 22 from that install:
//
//   node server.mjs serve
//       Configuration comes from environment variables set by start.sh:
//         REFPDS_HOSTNAME    public hostname; issuer is https://<hostname>
//         REFPDS_PORT        PDS port on 127.0.0.1 (0 = any free port)
//         REFPDS_PLC_PORT    PLC port on 127.0.0.1 (0 = any free port)
//         REFPDS_DATA_DIR    PDS data directory (start.sh makes a temp dir)
//         REFPDS_READY_FILE  written once both servers listen, as lines
//                            pid=<n> pds_port=<n> plc_port=<n>
//       SIGTERM/SIGINT stop both servers; SIGHUP is ignored.
//
//   node server.mjs health <pdsURL>
//       Exits 0 when <pdsURL>/xrpc/_health answers 200 within 5 seconds.
//
//   node server.mjs create-account <pdsURL> <handle> <email> <password>
//       Calls com.atproto.server.createAccount and prints the new DID.
//       Tokens in the answer are not printed.
//
// Nothing here prints secrets: the server's own secrets are random per run
// and stay in memory.

import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import fs from 'node:fs/promises'
import path from 'node:path'
import process from 'node:process'

function log(msg) {
  process.stdout.write(`[refpds ${new Date().toISOString()}] ${msg}\n`)
}

function fail(msg) {
  process.stderr.write(`refpds: ${msg}\n`)
  process.exit(1)
}

function portFromEnv(name) {
  const raw = process.env[name] ?? '0'
  const port = Number(raw)
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    fail(`${name}=${raw} is not a port number`)
  }
  return port
}

async function listenLoopback(app, port) {
  const server = app.listen(port, '127.0.0.1')
  await once(server, 'listening')
  return server
}

function closeServer(server) {
  if (!server) return Promise.resolve()
  return new Promise((resolve) => {
    server.close(() => resolve())
    server.closeAllConnections?.()
  })
}

async function serve() {
  const hostname = process.env.REFPDS_HOSTNAME || 'pds.test'
  const pdsPort = portFromEnv('REFPDS_PORT')
  const plcPort = portFromEnv('REFPDS_PLC_PORT')
  const dataDir = process.env.REFPDS_DATA_DIR
  const readyFile = process.env.REFPDS_READY_FILE
  if (!dataDir) fail('REFPDS_DATA_DIR is not set')
  if (!readyFile) fail('REFPDS_READY_FILE is not set')

  // Imported here so that `create-account` starts fast.
  const plcMod = await import('@did-plc/server')
  const { PlcServer, Database: PlcDatabase } = plcMod.default ?? plcMod
  const { PDS, envToCfg, envToSecrets } = await import('@atproto/pds')

  // In-memory PLC directory. PlcServer.start() would listen on every
  // interface, so listen on loopback ourselves.
  const plc = PlcServer.create({ db: PlcDatabase.mock(), port: plcPort })
  const plcServer = await listenLoopback(plc.app, plcPort)
  const plcBound = plcServer.address().port
  log(`PLC listening on 127.0.0.1:${plcBound}`)

  await fs.mkdir(path.join(dataDir, 'blobs'), { recursive: true })
  const env = {
    port: pdsPort,
    hostname, // issuer and public URL: https://<hostname>
    devMode: true,
    // The PDS must reach the PLC over plain http on loopback.
    disableSsrfProtection: true,
    // Its DID resolver refuses IP-address hosts even in dev mode.
    didPlcUrl: `http://localhost:${plcBound}`,
    serviceHandleDomains: ['.test'],
    inviteRequired: false,
    dataDirectory: dataDir,
    blobstoreDiskLocation: path.join(dataDir, 'blobs'),
    // No app view, moderation, crawlers, email or captcha: the only
    // outbound calls go to the local PLC.
    crawlers: [],
    rateLimitsEnabled: false,
    trustedOAuthClients: [],
    // Per-run random secrets; never printed.
    jwtSecret: randomBytes(32).toString('hex'),
    adminPassword: randomBytes(24).toString('hex'),
    plcRotationKeyK256PrivateKeyHex: randomBytes(32).toString('hex'),
  }
  const pds = await PDS.create(envToCfg(env), envToSecrets(env))

  // What PDS.start() does, but bound to 127.0.0.1.
  await pds.ctx.sequencer.start()
  const pdsServer = await listenLoopback(pds.app, pdsPort)
  pdsServer.keepAliveTimeout = 90_000
  pds.server = pdsServer
  const pdsBound = pdsServer.address().port
  log(`PDS listening on 127.0.0.1:${pdsBound} as https://${hostname}`)

  let stopping = false
  const stop = async (sig) => {
    if (stopping) return
    stopping = true
    log(`${sig}: stopping`)
    const timer = setTimeout(() => {
      log('forced exit after 10s')
      process.exit(1)
    }, 10_000)
    timer.unref()
    try {
      await closeServer(pdsServer)
      await pds.destroy()
      await closeServer(plcServer)
      await plc.ctx.db.close()
    } catch (err) {
      log(`error while stopping: ${err?.message ?? err}`)
    }
    log('stopped')
    process.exit(0)
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  // Outlive the terminal that ran start.sh; stop.sh sends SIGTERM.
  process.on('SIGHUP', () => log('SIGHUP ignored'))

  const ready = `pid=${process.pid}\npds_port=${pdsBound}\nplc_port=${plcBound}\n`
  await fs.writeFile(`${readyFile}.tmp`, ready)
  await fs.rename(`${readyFile}.tmp`, readyFile)
}

async function createAccount(pdsURL, handle, email, password) {
  if (!pdsURL || !handle || !email || !password) {
    fail('usage: server.mjs create-account <pdsURL> <handle> <email> <password>')
  }
  const res = await fetch(
    new URL('/xrpc/com.atproto.server.createAccount', pdsURL),
    {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ handle, email, password }),
      signal: AbortSignal.timeout(30_000),
    },
  )
  const text = await res.text()
  let body
  try {
    body = JSON.parse(text)
  } catch {
    body = {}
  }
  if (!res.ok || typeof body.did !== 'string') {
    // Error answers carry no tokens; print only error and message.
    fail(
      `createAccount ${handle}: HTTP ${res.status} ${body.error ?? ''} ${body.message ?? text.slice(0, 200)}`,
    )
  }
  process.stdout.write(body.did + '\n')
}

async function health(pdsURL) {
  if (!pdsURL) fail('usage: server.mjs health <pdsURL>')
  const res = await fetch(new URL('/xrpc/_health', pdsURL), {
    signal: AbortSignal.timeout(5_000),
  })
  if (!res.ok) fail(`${pdsURL}/xrpc/_health: HTTP ${res.status}`)
  process.stdout.write((await res.text()).trim() + '\n')
}

const [cmd, ...args] = process.argv.slice(2)
switch (cmd) {
  case 'serve':
    serve().catch((err) => {
      process.stderr.write(`refpds: failed to start: ${err?.stack ?? err}\n`)
      process.exit(1)
    })
    break
  case 'health':
    health(...args).catch((err) => fail(err?.message ?? String(err)))
    break
  case 'create-account':
    createAccount(...args).catch((err) => fail(err?.message ?? String(err)))
    break
  default:
    fail(
      'usage: server.mjs serve | health <pdsURL> | create-account <pdsURL> <handle> <email> <password>',
    )
}
