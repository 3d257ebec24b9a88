'use strict'
// The JS ilp-plugin-http@1.6.1 as a receiver that fulfils every Prepare.
//
//   node bench/js_server.js '{"token": "...", "jwtSecret": "..."}'
//
// Options (all optional): token (static token, default "bench-static-token"),
// jwtSecret (HS256 secret: then JWTs are accepted, and the static token too,
// as the JS plugin does when both are set), port (default 0: any free port),
// holdMs (the handler holds every Prepare this long before it fulfils: the
// packets-in-flight memory row).
// It listens on 127.0.0.1 only, prints {"event":"ready","port":N} on stdout,
// and exits when stdin closes (or on SIGTERM/SIGINT), so it never outlives the
// harness.  Used alone (under wrk) and as the receiver of the two-process pair;
// js_pair.js also requires it for the one-process pair.
//
// The data handler parses the Prepare (as any real receiver would) and answers
// a Fulfill whose fulfillment hashes to the Prepare's condition: the harness
// always uses FULFILLMENT below, so the Fulfill is built once.

const path = require('path')
const http = require('http')

const MODULES = path.join(__dirname, '..', 'interop', 'node_modules')
const LOOPBACK = '127.0.0.1'
// sha256 of this is the condition of every bench Prepare (see run.py)
const FULFILLMENT = Buffer.alloc(32, 7)
const DEFAULT_TOKEN = 'bench-static-token'

function req (name) {
  return require(path.join(MODULES, name))
}

// The plugin's server is koa's app.listen(port): on every interface.  Bind it
// to loopback only; the rest is koa's own listen (http.createServer(callback)).
function patchKoaListen () {
  const Koa = req('koa')
  if (Koa.prototype.__benchPatched) return
  Koa.prototype.listen = function (port) {
    const server = http.createServer(this.callback())
    server.listen(port || 0, LOOPBACK)
    Koa.prototype.__benchServers.push(server)
    return server
  }
  Koa.prototype.__benchServers = []
  Koa.prototype.__benchPatched = true
}

function whenListening (server) {
  return new Promise((resolve, reject) => {
    if (server.listening) return resolve(server.address().port)
    server.once('listening', () => resolve(server.address().port))
    server.once('error', reject)
  })
}

async function startReceiver (opts) {
  opts = opts || {}
  patchKoaListen()
  const IlpPacket = req('ilp-packet')
  const PluginHttp = req('ilp-plugin-http')
  const incoming = { port: opts.port || 0, staticToken: opts.token || DEFAULT_TOKEN }
  if (opts.jwtSecret) incoming.jwtSecret = opts.jwtSecret
  const plugin = new PluginHttp({
    incoming,
    // the receiver never sends; the JS plugin still wants an outgoing section
    outgoing: { url: 'http://127.0.0.1:9/', staticToken: 'unused' }
  })
  const fulfill = IlpPacket.serializeIlpFulfill({ fulfillment: FULFILLMENT, data: Buffer.alloc(0) })
  const holdMs = Number(opts.holdMs) || 0
  plugin.registerDataHandler(async (data) => {
    IlpPacket.deserializeIlpPrepare(data)
    if (holdMs > 0) await new Promise((resolve) => setTimeout(resolve, holdMs))
    return fulfill
  })
  await plugin.connect()
  const port = await whenListening(plugin._httpServer)
  return { plugin, port }
}

function exitWithParent (cleanup) {
  const stop = () => {
    Promise.resolve(cleanup()).catch(() => {}).then(() => process.exit(0))
    setTimeout(() => process.exit(0), 2000).unref()
  }
  process.stdin.on('end', stop)
  process.stdin.on('close', stop)
  process.stdin.resume()
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

module.exports = { startReceiver, exitWithParent, req, FULFILLMENT, DEFAULT_TOKEN, LOOPBACK }

if (require.main === module) {
  const opts = JSON.parse(process.argv[2] || '{}')
  startReceiver(opts).then(({ plugin, port }) => {
    process.stdout.write(JSON.stringify({ event: 'ready', port }) + '\n')
    exitWithParent(() => plugin.disconnect())
  }).catch((err) => {
    process.stderr.write('js_server: ' + (err && err.stack ? err.stack : err) + '\n')
    process.exit(1)
  })
}
