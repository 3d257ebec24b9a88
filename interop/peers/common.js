'use strict'
// Shared parts of the emulated peers (rafiki.js, java.js, rust.js): the data
// handler (what the emulated node answers to a Prepare that passed its HTTP
// rules), request recording, a minimal HTTP client that reports exactly what
// happened on the wire, and small helpers (JWT HS256, ILP packets).
//
// Nothing here encodes an implementation's rules: those live in the three
// scripts, each with citations to its sources (docs/peering/rules.md).

const crypto = require('crypto')
const http = require('http')
const IlpPacket = require('ilp-packet')
const control = require('../control')

const MAX_RECORDED = 10000

// --- the data handler ---------------------------------------------------------
// spec (config key "handler", or the "handler" command):
//   mode: "fulfill" (default)  fulfillment = `fulfillment` hex if given, else the
//                              first 32 bytes of the Prepare's data; if it does not
//                              hash to the condition: Reject F05 (unless `fulfillment`
//                              was given explicitly: then it is sent as is, to test
//                              the sender's fulfillment check).  Fulfill data: `data`
//                              hex if given, else the Prepare's data.
//         "reject"             Reject{code (F99), triggeredBy (own address), message, data}.
//         "echo"               the reply body is the request body, unchanged.
//         "garbage"            the reply body is `body` hex (default "not an ilp packet").
//         "hang"               never answers.
//   delayMs:  wait this long first.
//   trailing: hex appended to the reply body (to test a sender's strictness).
const MODES = ['fulfill', 'reject', 'echo', 'garbage', 'hang']

function makeHandler (initial, ownAddress) {
  let spec = normalize(initial || {})

  function normalize (s) {
    const mode = s.mode || 'fulfill'
    if (!MODES.includes(mode)) throw new Error('unknown handler mode: ' + mode)
    const out = Object.assign({}, s, { mode })
    delete out.cmd
    delete out.id
    return out
  }

  function hex (h) { return Buffer.from(h || '', 'hex') }

  // prepare: the parsed Prepare (ilp-packet shape), raw: its bytes as received.
  async function answer (prepare, raw) {
    const s = spec
    if (s.delayMs) await new Promise((resolve) => setTimeout(resolve, s.delayMs))
    let body
    switch (s.mode) {
      case 'fulfill': {
        const explicit = s.fulfillment !== undefined
        const fulfillment = explicit ? hex(s.fulfillment) : prepare.data.slice(0, 32)
        const ok = fulfillment.length === 32 &&
          sha256(fulfillment).equals(prepare.executionCondition)
        if (ok || (explicit && fulfillment.length === 32)) {
          body = IlpPacket.serializeIlpFulfill({
            fulfillment,
            data: s.data !== undefined ? hex(s.data) : prepare.data
          })
        } else {
          body = IlpPacket.serializeIlpReject({
            code: 'F05',
            triggeredBy: ownAddress || '',
            message: 'fulfillment (first 32 bytes of data) does not match the condition',
            data: Buffer.alloc(0)
          })
        }
        break
      }
      case 'reject':
        body = IlpPacket.serializeIlpReject({
          code: s.code || 'F99',
          triggeredBy: s.triggeredBy !== undefined ? s.triggeredBy : (ownAddress || ''),
          message: s.message || '',
          data: hex(s.data)
        })
        break
      case 'echo':
        body = raw
        break
      case 'garbage':
        body = s.body !== undefined ? hex(s.body) : Buffer.from('not an ilp packet')
        break
      case 'hang':
        return new Promise(() => {})
    }
    if (s.trailing) body = Buffer.concat([body, hex(s.trailing)])
    return body
  }

  return {
    answer,
    set (s) { spec = normalize(s); return { ok: true } },
    get spec () { return spec }
  }
}

// --- recording -------------------------------------------------------------------

function makeRecorder () {
  const requests = [] // every HTTP request: method, url, headers, body, status, response
  const received = [] // every Prepare handed to the data handler (hex)
  function push (list, item) {
    if (list.length >= MAX_RECORDED) list.shift()
    list.push(item)
  }
  return {
    requests,
    received,
    request (req, body) {
      const entry = {
        method: req.method,
        url: req.url,
        httpVersion: req.httpVersion,
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        body: body.toString('hex'),
        status: null,
        responseHeaders: null,
        responseBody: null,
        rule: null
      }
      push(requests, entry)
      return entry
    },
    prepare (raw) { push(received, raw.toString('hex')) },
    clear () { requests.length = 0; received.length = 0 }
  }
}

// Reads the whole body, then calls handle(req, body, entry) which must return
// {status, headers, body (Buffer|string), rule} (or a Promise of it).  `rule`
// names the implementation rule that decided the answer; it is recorded.
function createServer (recorder, handle) {
  return http.createServer((req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      const entry = recorder.request(req, body)
      Promise.resolve()
        .then(() => handle(req, body, entry))
        .catch((err) => {
          control.log('server handler failed:', (err && err.stack) || err)
          return { status: 500, headers: { 'content-type': 'text/plain' }, body: 'emulator bug: ' + control.describe(err), rule: 'emulator-bug' }
        })
        .then((r) => {
          const payload = Buffer.isBuffer(r.body) ? r.body : Buffer.from(r.body || '', 'utf8')
          const headers = Object.assign({}, r.headers || {})
          headers['content-length'] = String(payload.length)
          entry.status = r.status
          entry.responseHeaders = headers
          entry.responseBody = payload.toString('hex')
          entry.rule = r.rule || null
          if (res.destroyed) return
          res.writeHead(r.status, headers)
          res.end(payload)
        })
    })
  })
}

// --- a plain HTTP client that reports everything ----------------------------------
// Sends exactly `headers` (names as given; node adds Host and, with a body,
// nothing else unless told) and resolves with
//   {status, statusMessage, headers, body: Buffer}   or rejects with an Error
// whose .kind is "connect" | "timeout" | "io".
function httpPost (url, headers, body, timeoutMs, agent) {
  return new Promise((resolve, reject) => {
    const u = new URL(url)
    const req = http.request({
      method: 'POST',
      hostname: u.hostname,
      port: u.port || 80,
      path: u.pathname + u.search,
      headers,
      agent: agent || false
    }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => resolve({
        status: res.statusCode,
        statusMessage: res.statusMessage,
        headers: res.headers,
        body: Buffer.concat(chunks)
      }))
      res.on('error', (err) => { err.kind = 'io'; reject(err) })
    })
    let timer = null
    if (timeoutMs) {
      timer = setTimeout(() => {
        const err = new Error('timeout of ' + timeoutMs + 'ms exceeded')
        err.kind = 'timeout'
        req.destroy(err)
      }, timeoutMs)
    }
    req.on('error', (err) => {
      if (!err.kind) err.kind = (err.code === 'ECONNREFUSED' || err.code === 'ENOTFOUND' || err.code === 'EHOSTUNREACH') ? 'connect' : 'io'
      reject(err)
    })
    req.on('close', () => { if (timer) clearTimeout(timer) })
    req.end(body)
  })
}

// --- small helpers -----------------------------------------------------------------

function sha256 (buf) {
  return crypto.createHash('sha256').update(buf).digest()
}

function b64url (buf) {
  return Buffer.from(buf).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_')
}

function b64urlDecode (s) {
  if (!/^[A-Za-z0-9_-]*$/.test(s)) throw new Error('not base64url')
  return Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64')
}

// An HS256 JWT with this header and payload (objects, serialized in key order).
function signHs256 (secret, payload, header) {
  const h = b64url(JSON.stringify(header || { alg: 'HS256', typ: 'JWT' }))
  const p = b64url(JSON.stringify(payload))
  const sig = crypto.createHmac('sha256', Buffer.from(secret)).update(h + '.' + p).digest()
  return h + '.' + p + '.' + b64url(sig)
}

// Splits and decodes a compact JWT without verifying it; throws on bad shape.
function decodeJwt (token) {
  const parts = token.split('.')
  if (parts.length !== 3) throw new Error('The token was expected to have 3 parts, but got ' + parts.length + '.')
  const header = JSON.parse(b64urlDecode(parts[0]).toString('utf8'))
  const payload = JSON.parse(b64urlDecode(parts[1]).toString('utf8'))
  if (!header || typeof header !== 'object' || !payload || typeof payload !== 'object') {
    throw new Error('The token header or payload is not a JSON object.')
  }
  return { header, payload, signingInput: parts[0] + '.' + parts[1], signature: b64urlDecode(parts[2]) }
}

function hmacSha256 (secret, data) {
  return crypto.createHmac('sha256', Buffer.from(secret)).update(data).digest()
}

function timingSafeEqualBuf (a, b) {
  return a.length === b.length && crypto.timingSafeEqual(a, b)
}

function reject (code, triggeredBy, message, data) {
  return IlpPacket.serializeIlpReject({
    code,
    triggeredBy: triggeredBy || '',
    message: message || '',
    data: data || Buffer.alloc(0)
  })
}

// Describes a reply packet for test output: {type, code, message, ...}.
function describeReply (buf) {
  try {
    const r = IlpPacket.deserializeIlpReply(buf)
    if (r.fulfillment) return { type: 'fulfill', fulfillment: r.fulfillment.toString('hex'), data: r.data.toString('hex') }
    return { type: 'reject', code: r.code, triggeredBy: r.triggeredBy, message: r.message, data: r.data.toString('hex') }
  } catch (e) {
    return { type: 'unparsable', error: control.describe(e) }
  }
}

// OER layout of an ILP packet, for strictness rules: how many bytes follow the
// envelope ("outer") and the last field inside it ("inner").  Throws on a
// truncated packet.  {type, outerTrailing, innerTrailing}
function oerLayout (buf) {
  function varLen (off, end) {
    if (off >= end) throw new Error('unexpected end of packet')
    const b = buf[off]
    if (b < 0x80) return [b, off + 1]
    const n = b & 0x7f
    if (n === 0 || off + 1 + n > end) throw new Error('bad length prefix')
    let len = 0
    for (let i = 0; i < n; i++) len = len * 256 + buf[off + 1 + i]
    return [len, off + 1 + n]
  }
  function varOctets (off, end) {
    const [len, start] = varLen(off, end)
    if (start + len > end) throw new Error('unexpected end of packet')
    return start + len
  }
  if (buf.length < 1) throw new Error('unexpected end of packet')
  const type = buf[0]
  const [clen, cstart] = varLen(1, buf.length)
  const cend = cstart + clen
  if (cend > buf.length) throw new Error('unexpected end of packet')
  let off = cstart
  const fixed = { 12: 8 + 17 + 32, 13: 32, 14: 3 }[type]
  if (fixed === undefined) throw new Error('unknown packet type ' + type)
  off += fixed
  if (off > cend) throw new Error('unexpected end of packet')
  const fields = { 12: 2, 13: 1, 14: 3 }[type]
  for (let i = 0; i < fields; i++) off = varOctets(off, cend)
  return { type, outerTrailing: buf.length - cend, innerTrailing: cend - off }
}

function problemJson (obj) {
  return JSON.stringify(obj)
}

// --- the process: config, server, command loop ---------------------------------------
// impl: {name, defaults (config defaults), serve(req, body, ctx) -> answer,
//        send(msg, ctx) -> result, commands (extra command handlers)}.
// ctx: {config, handler, recorder}.  Config = argv[2] (JSON or a file), merged
// over impl.defaults; "port": null starts no server (client only).
function runPeer (impl) {
  const config = Object.assign({}, impl.defaults || {}, control.loadConfig(process.argv[2]))
  const handler = makeHandler(config.handler, config.address)
  const recorder = makeRecorder()
  const ctx = { config, handler, recorder }
  let server = null
  if (config.port !== null) {
    server = createServer(recorder, (req, body, entry) => impl.serve(req, body, ctx, entry))
    server.listen(config.port || 0, control.LOOPBACK)
  }
  ctx.server = server
  const commands = Object.assign({
    send: async (msg) => impl.send(msg, ctx),
    handler: async (msg) => handler.set(msg),
    received: async () => ({ received: recorder.received.slice() }),
    requests: async () => ({ requests: recorder.requests.slice() }),
    clear: async () => { recorder.clear(); return { ok: true } },
    info: async () => ({
      impl: impl.name,
      port: server && server.address() && server.address().port,
      address: config.address
    })
  }, impl.commands ? impl.commands(ctx) : {})
  control.serve(commands, async () => { if (server) server.close() })
  const ready = server ? control.whenListening(server) : Promise.resolve(null)
  ready.then(
    (port) => control.emit({ event: 'ready', impl: impl.name, port, address: config.address }),
    (err) => {
      control.log(impl.name, 'peer failed to start:', (err && err.stack) || err)
      control.emit({ event: 'fatal', error: control.describe(err) })
      process.exit(1)
    })
  return ctx
}

// What a client command returns: the request it made, then the reply that
// implementation would pass upstream, and which rule produced it.
function clientResult (request) {
  const result = { request, response: null }
  result.done = function done (reply, stage, extra) {
    delete result.done
    return Object.assign(result, extra || {}, {
      reply: reply.toString('hex'),
      replyInfo: describeReply(reply),
      stage
    })
  }
  return result
}

module.exports = {
  runPeer,
  clientResult,
  MODES,
  makeHandler,
  makeRecorder,
  createServer,
  httpPost,
  sha256,
  b64url,
  b64urlDecode,
  signHs256,
  decodeJwt,
  hmacSha256,
  timingSafeEqualBuf,
  reject,
  describeReply,
  problemJson,
  oerLayout,
  IlpPacket,
  control
}
