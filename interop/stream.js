'use strict'
// A real ilp-protocol-stream (2.7.2-alpha.3) server or client over a real JS
// ilp-plugin-http, driven by the JSON control protocol of control.js.
//
//   node stream.js server '<json>' | <file.json>
//   node stream.js client '<json>' | <file.json>
//
// Config (both modes):
//   {"plugin": {...ilp-plugin-http constructor options...},
//    "serveIldcp": {"clientAddress":..., "assetScale":..., "assetCode":...},  // optional
//    "receiveMax": "<units>"}                                                // server only
// STREAM learns its own address by IL-DCP (peer.config) through the plugin, so
// the other end of the plugin must answer peer.config: an ilp-connector (child
// account), an ilphttp peer, or, with "serveIldcp", this script itself answers
// the IL-DCP requests that come IN through its plugin (for two stream.js
// endpoints wired directly to each other; start the client first).
//
// server: ready line {"event":"ready","port","address","assetCode","assetScale",
//                     "destinationAccount","sharedSecret" (base64)}
//   "total"    -> {"total":"<units received, all connections>","connections":n,"streams":n}
//   "generate" {connectionTag?} -> {"destinationAccount","sharedSecret"}
// client: ready line {"event":"ready","port"} (the plugin is connected)
//   "pay" {destinationAccount, sharedSecret (base64), amount (string),
//          timeoutMs (default 20000)}
//     -> {"sent":"<source units>","delivered":"<destination units>",
//         "sourceAccount","destinationAccount"}  or {"error": ...}
// both: "stop".

const control = require('./control')

control.patchKoa()
const IlpPacket = require('ilp-packet')
const ILDCP = require('ilp-protocol-ildcp')
const PluginHttp = require('ilp-plugin-http')
const stream = require('ilp-protocol-stream')

const mode = process.argv[2]
const config = control.loadConfig(process.argv[3])
if (mode !== 'server' && mode !== 'client') {
  control.log('usage: node stream.js server|client <json>')
  process.exit(2)
}

const pluginOptions = config.plugin || {}
if (!pluginOptions.incoming) pluginOptions.incoming = {}
if (!pluginOptions.outgoing) pluginOptions.outgoing = {}
const plugin = new PluginHttp(pluginOptions)

function isIldcpRequest (data) {
  if (data[0] !== IlpPacket.Type.TYPE_ILP_PREPARE) return false
  try {
    return IlpPacket.deserializeIlpPrepare(data).destination === 'peer.config'
  } catch (e) {
    return false
  }
}

if (config.serveIldcp) {
  // Answer incoming peer.config before whatever handler STREAM registers, and
  // keep a handler registered while STREAM has none (so IL-DCP works early).
  const response = ILDCP.serializeIldcpResponse(config.serveIldcp)
  const fallback = async () => IlpPacket.serializeIlpReject({
    code: 'F02', triggeredBy: config.serveIldcp.clientAddress, message: 'no STREAM handler yet', data: Buffer.alloc(0)
  })
  const register = plugin.registerDataHandler.bind(plugin)
  const wrap = (handler) => async (data) => (isIldcpRequest(data) ? response : handler(data))
  plugin.registerDataHandler = (handler) => register(wrap(handler))
  plugin.deregisterDataHandler = () => register(wrap(fallback))
  plugin.registerDataHandler(fallback)
}

// createConnection disconnects the plugin when the connection closes; the
// client keeps its plugin (and its listening port) across payments instead.
const keepConnected = new Proxy(plugin, {
  get (target, key) {
    if (key === 'disconnect') return async () => {}
    const value = target[key]
    return typeof value === 'function' ? value.bind(target) : value
  }
})

async function start () {
  if (mode === 'server') return startServer()
  return startClient()
}

async function startServer () {
  const server = await stream.createServer({ plugin })
  const port = await control.whenListening(plugin._httpServer)
  let total = 0n
  let connections = 0
  let streams = 0
  const receiveMax = config.receiveMax || 'Infinity'
  server.on('connection', (conn) => {
    connections += 1
    conn.on('error', (err) => control.log('connection error:', control.describe(err)))
    conn.on('stream', (s) => {
      streams += 1
      s.setReceiveMax(receiveMax === 'Infinity' ? Infinity : receiveMax)
      s.on('money', (amount) => { total += BigInt(amount) })
      s.on('error', (err) => control.log('stream error:', control.describe(err)))
    })
  })
  const generated = server.generateAddressAndSecret()
  control.serve({
    total: async () => ({ total: total.toString(), connections, streams }),
    generate: async (msg) => {
      const g = server.generateAddressAndSecret(msg.connectionTag ? { connectionTag: msg.connectionTag } : undefined)
      return { destinationAccount: g.destinationAccount, sharedSecret: g.sharedSecret.toString('base64') }
    }
  }, async () => {
    await control.withTimeout(server.close(), 1000, 'server.close').catch(() => {})
    await plugin.disconnect()
  })
  control.emit({
    event: 'ready',
    port,
    address: generated.destinationAccount.split('.').slice(0, -1).join('.'),
    assetCode: server.assetCode,
    assetScale: server.assetScale,
    destinationAccount: generated.destinationAccount,
    sharedSecret: generated.sharedSecret.toString('base64')
  })
}

async function startClient () {
  await plugin.connect()
  const port = await control.whenListening(plugin._httpServer)
  control.serve({
    pay: async (msg) => {
      const timeout = msg.timeoutMs || 20000
      const conn = await control.withTimeout(stream.createConnection({
        plugin: keepConnected,
        destinationAccount: msg.destinationAccount,
        sharedSecret: Buffer.from(msg.sharedSecret, 'base64')
      }), timeout, 'createConnection')
      try {
        const s = conn.createStream()
        await s.sendTotal(msg.amount, { timeout })
        return {
          sent: conn.totalSent,
          delivered: conn.totalDelivered,
          sourceAccount: conn.sourceAccount,
          destinationAccount: conn.destinationAccount
        }
      } finally {
        await control.withTimeout(conn.end(), 2000, 'connection.end').catch((err) => {
          control.log('connection.end failed:', control.describe(err))
          conn.destroy()
        })
      }
    }
  }, async () => { await plugin.disconnect() })
  control.emit({ event: 'ready', port })
}

start().catch((err) => {
  control.log('stream', mode, 'failed to start:', (err && err.stack) || err)
  control.emit({ event: 'fatal', error: control.describe(err) })
  process.exit(1)
})
