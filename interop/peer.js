'use strict'
// One real JS ilp-plugin-http (1.6.1) instance, driven by a line-based JSON
// control protocol (see control.js and the docstring of tests/jsinterop.py).
//
//   node peer.js '<json>' | <file.json>
//
// The config is either the plugin's constructor options exactly as the JS
// plugin takes them ({"incoming": {...}, "outgoing": {...}, "multi": ...}), or
// a wrapper {"options": {...plugin options...}, "handler": {...handler spec...}}.
// With {"mode": "capture-server", ...} it runs a plain HTTP server instead (below).
//
// Ready line: {"event":"ready","port":<incoming port>,"name":<ILP-Peer-Name it sends>}
//
// Handler spec ({"cmd":"handler", ...} or the "handler" key of the config):
//   mode: "fulfill" (default)  fulfillment = first 32 bytes of the Prepare's data;
//                              if sha256(fulfillment) == executionCondition the
//                              reply is Fulfill{fulfillment, data: <the Prepare's data>}
//                              (or `data` hex if given), else Reject F05.
//         "reject"             Reject{code (F99), triggeredBy, message, data}.
//         "echo"               the reply body is the request body, unchanged.
//         "throw"              the handler throws (the JS server answers HTTP 500).
//         "hang"               never answers.
//         "garbage"            answers `body` hex (default: the bytes "not an ilp packet").
//         "ildcp"              answers peer.config with `ildcp`, Reject F02 otherwise.
//         "none"               no data handler registered (the JS server answers 502).
//   ildcp: {clientAddress, assetScale, assetCode}: with any mode, Prepares to
//          peer.config are answered with this IL-DCP response.
//   delayMs: wait this long before answering.
//   code, message, triggeredBy, data (hex), body (hex): as above.

const crypto = require('crypto')
const http = require('http')
const control = require('./control')

const config = control.loadConfig(process.argv[2])

if (config.mode === 'capture-server') {
  runCaptureServer(config)
} else {
  runPeer(config)
}

function runPeer (config) {
  control.patchKoa()
  const IlpPacket = require('ilp-packet')
  const ILDCP = require('ilp-protocol-ildcp')
  const PluginHttp = require('ilp-plugin-http')

  const wrapped = Object.prototype.hasOwnProperty.call(config, 'options')
  const options = wrapped ? config.options : config
  if (!options.incoming) options.incoming = {}
  if (!options.outgoing) options.outgoing = {}

  const MAX_RECEIVED = 10000
  const received = []
  let spec = { mode: 'fulfill' }
  const plugin = new PluginHttp(options)

  function hexOrEmpty (hex) {
    return Buffer.from(hex || '', 'hex')
  }

  async function dataHandler (packet) {
    if (received.length >= MAX_RECEIVED) received.shift()
    received.push(packet.toString('hex'))
    const s = spec
    if (s.delayMs) await new Promise((resolve) => setTimeout(resolve, s.delayMs))
    if (s.ildcp || s.mode === 'ildcp') {
      let prepare = null
      try { prepare = IlpPacket.deserializeIlpPrepare(packet) } catch (e) {}
      if (prepare && prepare.destination === 'peer.config') {
        if (!s.ildcp) throw new Error('handler mode ildcp needs an "ildcp" response')
        return ILDCP.serializeIldcpResponse(s.ildcp)
      }
    }
    switch (s.mode) {
      case 'fulfill': {
        const prepare = IlpPacket.deserializeIlpPrepare(packet)
        const fulfillment = prepare.data.slice(0, 32)
        const condition = crypto.createHash('sha256').update(fulfillment).digest()
        if (fulfillment.length === 32 && condition.equals(prepare.executionCondition)) {
          return IlpPacket.serializeIlpFulfill({
            fulfillment,
            data: s.data !== undefined ? hexOrEmpty(s.data) : prepare.data
          })
        }
        return IlpPacket.serializeIlpReject({
          code: 'F05',
          triggeredBy: s.triggeredBy || '',
          message: 'fulfillment (first 32 bytes of data) does not match the condition',
          data: Buffer.alloc(0)
        })
      }
      case 'reject':
        return IlpPacket.serializeIlpReject({
          code: s.code || 'F99',
          triggeredBy: s.triggeredBy || '',
          message: s.message || '',
          data: hexOrEmpty(s.data)
        })
      case 'echo':
        return packet
      case 'throw':
        throw new Error(s.message || 'handler told to throw')
      case 'hang':
        return new Promise(() => {})
      case 'garbage':
        return s.body !== undefined ? hexOrEmpty(s.body) : Buffer.from('not an ilp packet')
      case 'ildcp':
        return IlpPacket.serializeIlpReject({
          code: 'F02',
          triggeredBy: s.triggeredBy || '',
          message: 'this peer only answers peer.config',
          data: Buffer.alloc(0)
        })
      default:
        throw new Error('unknown handler mode: ' + s.mode)
    }
  }

  const MODES = ['fulfill', 'reject', 'echo', 'throw', 'hang', 'garbage', 'ildcp', 'none']

  function setHandler (newSpec) {
    const mode = newSpec.mode || 'fulfill'
    if (!MODES.includes(mode)) throw new Error('unknown handler mode: ' + mode)
    spec = Object.assign({}, newSpec, { mode })
    delete spec.cmd
    delete spec.id
    if (mode === 'none') {
      plugin.deregisterDataHandler()
    } else {
      plugin.registerDataHandler(dataHandler)
    }
  }

  control.serve({
    send: async (msg) => {
      const reply = await control.withTimeout(
        plugin.sendData(Buffer.from(msg.prepare, 'hex')), msg.timeoutMs, 'sendData')
      return { reply: Buffer.from(reply).toString('hex') }
    },
    handler: async (msg) => { setHandler(msg); return { ok: true } },
    received: async () => ({ received: received.slice() }),
    requests: async () => ({ requests: control.requests.slice() }),
    clear: async () => {
      received.length = 0
      control.requests.length = 0
      return { ok: true }
    },
    info: async () => ({
      connected: plugin.isConnected(),
      port: plugin._httpServer && plugin._httpServer.address() && plugin._httpServer.address().port,
      name: plugin._name
    }),
    connect: async () => { await plugin.connect(); return { connected: plugin.isConnected() } },
    disconnect: async () => { await plugin.disconnect(); return { connected: plugin.isConnected() } }
  }, async () => { await plugin.disconnect() })

  ;(async () => {
    setHandler(wrapped && config.handler ? config.handler : { mode: 'fulfill' })
    await plugin.connect()
    const port = await control.whenListening(plugin._httpServer)
    control.emit({ event: 'ready', port, name: plugin._name })
  })().catch((err) => {
    control.log('peer failed to start:', (err && err.stack) || err)
    control.emit({ event: 'fatal', error: control.describe(err) })
    process.exit(1)
  })
}

// A plain node HTTP server that records every request (with its body) and
// answers a configurable response.  Config:
//   {"mode":"capture-server","port":N,"status":200,"body":"<hex>",
//    "headers":{"content-type":"application/octet-stream"},"delayMs":0}
// Commands: "requests" -> {"requests":[{method,url,httpVersion,headers,body(hex)}]},
//           "respond" {status, body, headers, delayMs} changes the response,
//           "clear", "stop".
function runCaptureServer (config) {
  const captured = []
  let response = {
    status: config.status || 200,
    body: config.body || '',
    headers: config.headers || { 'content-type': 'application/octet-stream' },
    delayMs: config.delayMs || 0
  }
  const server = http.createServer((req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      if (captured.length >= 10000) captured.shift()
      captured.push({
        method: req.method,
        url: req.url,
        httpVersion: req.httpVersion,
        headers: req.headers,
        body: Buffer.concat(chunks).toString('hex')
      })
      const r = response
      const answer = () => {
        res.writeHead(r.status, r.headers)
        res.end(Buffer.from(r.body, 'hex'))
      }
      if (r.delayMs) setTimeout(answer, r.delayMs)
      else answer()
    })
  })
  server.listen(config.port || 0, control.LOOPBACK)
  control.serve({
    requests: async () => ({ requests: captured.slice() }),
    respond: async (msg) => {
      response = {
        status: msg.status || 200,
        body: msg.body || '',
        headers: msg.headers || { 'content-type': 'application/octet-stream' },
        delayMs: msg.delayMs || 0
      }
      return { ok: true }
    },
    clear: async () => { captured.length = 0; return { ok: true } }
  }, async () => { server.close() })
  control.whenListening(server).then(
    (port) => control.emit({ event: 'ready', port }),
    (err) => {
      control.log('capture server failed to start:', (err && err.stack) || err)
      control.emit({ event: 'fatal', error: control.describe(err) })
      process.exit(1)
    })
}
