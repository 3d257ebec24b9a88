'use strict'
// An independent RFC 35 asynchronous peer, written from the text of
// interledger/rfcs 0035-ilp-over-http/0035-ilp-over-http.md at HEAD (draft 3,
// asynchronous only since commit 5bf6a3c), not from ilphttp's code.  Node's
// plain `http` module; the machinery of common.js (handler, recording, command loop).
//
//   node interop/peers/rfc35.js '<json config>'
//
// Config (all optional):
//   port           0 (any free port)
//   address        its ILP address (triggeredBy of its Rejects); "test.rfc35"
//   incomingToken  the Bearer token it requires on both legs it receives
//   outgoingToken  the Bearer token it sends on both legs it sends
//   callbackPath   the path of its reply endpoint; "/incoming/ilp"
//   handler        a handler spec (common.js)
//
// Rules, as the RFC states them:
//  * "Send ILP Prepare": POST with Accept and Content-Type
//    application/octet-stream, Callback-Url, Request-Id (UUIDv4); a
//    semantically valid request is answered "202 Accepted" at once, even if
//    the packet will be rejected later.  (Invalid: 401 without the token, 400
//    otherwise -- "An endpoint MAY return standard HTTP errors".)
//  * "ILP Fulfill/Reject Reply": POST <Callback-Url> with the same Request-Id,
//    Content-Type application/octet-stream, the Fulfill/Reject; "200 OK", or
//    400 if the id "doesn't correspond to an in-flight ILP Prepare, or a reply
//    was already processed".
//  * "Retry Behavior": retry on 5xx or no response within a timeout; MUST stop
//    after a 2xx or 4xx; several attempts before the Prepare expires.
//  * "Idempotence": only the first reply counts.
//  * "Error Handling": 5xx on the Prepare leg -> T00 (other failures: our
//    choice, F00 for 4xx, T01 when unreachable).
//
// Commands (besides common.js's handler/received/requests/clear/info/stop):
//   send {prepare: hex, url, token?, callbackUrl?, requestId?, timeoutMs?}
//        -> {reply, replyInfo, stage, request, response, requestId}
//        stage: "callback" (the reply came to our endpoint), "expired" (R00),
//        "http-status" (the Prepare leg was not 202), "http-error", "sync-body"
//   callback {failFirst: n, status: 503, hangFirst: n}: how our reply endpoint
//        treats the next replies (answers `status` to the first n, or never answers)
//   deliveries -> {deliveries: [{requestId, url, attempts: [{status|error, atMs}], outcome}]}
//   post {url, headers, body: hex} -> {status, body: hex}  (a raw POST, to test a peer)

const crypto = require('crypto')
const common = require('./common')
const { IlpPacket } = common

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i
const ATTEMPT_TIMEOUT_MS = 1000
const FIRST_RETRY_MS = 50
const MAX_RETRY_MS = 1000

const pending = new Map() // requestId -> {resolve, expiresAt}  (our Prepares in flight)
const answered = new Map() // requestId -> expiresAt            (first reply processed)
const deliveries = [] // replies we POSTed to a peer's Callback-Url
let callbackBehaviour = { failFirst: 0, status: 503, hangFirst: 0 }

function bearerOk (req, token) {
  if (token === undefined) return true
  return req.headers.authorization === 'Bearer ' + token
}

function text (status, body, rule) {
  return { status, headers: { 'content-type': 'text/plain' }, body, rule }
}

function isOctetStream (req) {
  return (req.headers['content-type'] || '').split(';')[0].trim().toLowerCase() === 'application/octet-stream'
}

// --- the server: the Prepare leg and the reply endpoint ------------------------

async function serve (req, body, ctx) {
  const { config } = ctx
  const path = req.url.split('?')[0]
  if (req.method !== 'POST') return text(405, 'POST only', 'method')
  if (!bearerOk(req, config.incomingToken)) return text(401, 'unauthorized', 'auth')
  if (!isOctetStream(req)) return text(400, 'Content-Type must be application/octet-stream', 'content-type')
  if (path === config.callbackPath) return receiveReply(req, body)
  return receivePrepare(req, body, ctx)
}

function receivePrepare (req, body, ctx) {
  const requestId = req.headers['request-id']
  const callbackUrl = req.headers['callback-url']
  if (!requestId || !UUID_V4.test(requestId)) return text(400, 'Request-Id must be a UUIDv4', 'request-id')
  if (!callbackUrl) return text(400, 'Callback-Url is required', 'callback-url')
  let url
  try { url = new URL(callbackUrl) } catch (e) { return text(400, 'Callback-Url is not a URL', 'callback-url') }
  if (url.protocol !== 'http:') return text(400, 'Callback-Url must be http: here', 'callback-url')
  let prepare
  try {
    prepare = IlpPacket.deserializeIlpPrepare(body)
  } catch (e) {
    return text(400, 'not an ILP Prepare', 'packet')
  }
  ctx.recorder.prepare(body)
  // "respond immediately ... even if the packet will ultimately be rejected"
  setImmediate(() => handleThenReply(prepare, body, requestId, callbackUrl, ctx))
  return { status: 202, headers: {}, body: '', rule: 'accepted' }
}

async function handleThenReply (prepare, raw, requestId, callbackUrl, ctx) {
  let reply
  if (prepare.expiresAt.getTime() <= Date.now()) {
    reply = common.reject('R00', ctx.config.address, 'expired')
  } else {
    reply = await ctx.handler.answer(prepare, raw)
  }
  await deliver(callbackUrl, requestId, reply, prepare.expiresAt.getTime(), ctx.config)
}

async function deliver (url, requestId, reply, expiresAt, config) {
  const record = { requestId, url, attempts: [], outcome: null }
  deliveries.push(record)
  const started = Date.now()
  let delay = FIRST_RETRY_MS
  const headers = { 'content-type': 'application/octet-stream', 'request-id': requestId }
  if (config.outgoingToken !== undefined) headers.authorization = 'Bearer ' + config.outgoingToken
  for (;;) {
    const attempt = { atMs: Date.now() - started }
    record.attempts.push(attempt)
    try {
      const res = await common.httpPost(url, headers, reply, ATTEMPT_TIMEOUT_MS)
      attempt.status = res.status
      if (res.status >= 200 && res.status < 300) { record.outcome = 'delivered'; return }
      if (res.status >= 400 && res.status < 500) { record.outcome = 'refused'; return }
    } catch (err) {
      attempt.error = err.kind || 'io'
    }
    // Retry (5xx, timeout, connection failure) while the Prepare has not expired.
    if (Date.now() + delay > expiresAt + 1000) { record.outcome = 'gave-up'; return }
    await new Promise((resolve) => setTimeout(resolve, delay))
    delay = Math.min(delay * 2, MAX_RETRY_MS)
  }
}

function receiveReply (req, body) {
  const requestId = (req.headers['request-id'] || '').toLowerCase()
  if (callbackBehaviour.hangFirst > 0) {
    callbackBehaviour.hangFirst--
    return new Promise(() => {})
  }
  if (callbackBehaviour.failFirst > 0) {
    callbackBehaviour.failFirst--
    return text(callbackBehaviour.status, 'try again', 'callback-fail')
  }
  const waiting = pending.get(requestId)
  if (!waiting) {
    const why = answered.has(requestId) ? 'reply already processed' : 'no such ILP Prepare in flight'
    return text(400, why, 'unknown-id')
  }
  let parsed
  try {
    parsed = IlpPacket.deserializeIlpReply(body)
  } catch (e) {
    return text(400, 'not an ILP Fulfill or Reject', 'packet')
  }
  pending.delete(requestId)
  answered.set(requestId, waiting.expiresAt)
  waiting.resolve({ body, parsed })
  return { status: 200, headers: {}, body: '', rule: 'ok' }
}

// Forget answered ids after their Prepare's expiry (nothing outlives it).
setInterval(() => {
  const now = Date.now()
  for (const [id, at] of answered) if (at < now) answered.delete(id)
}, 1000).unref()

// --- the client: send a Prepare, wait for the reply on our callback --------------

async function send (msg, ctx) {
  const { config } = ctx
  const address = config.address
  const raw = Buffer.from(msg.prepare, 'hex')
  const prepare = IlpPacket.deserializeIlpPrepare(raw)
  const requestId = msg.requestId || crypto.randomUUID()
  const callbackUrl = msg.callbackUrl || ('http://127.0.0.1:' + ctx.server.address().port + config.callbackPath)
  const headers = {
    accept: 'application/octet-stream',
    'content-type': 'application/octet-stream',
    'callback-url': callbackUrl,
    'request-id': requestId
  }
  const token = msg.token !== undefined ? msg.token : config.outgoingToken
  if (token !== undefined) headers.authorization = 'Bearer ' + token
  const result = common.clientResult({ url: msg.url, headers })
  result.requestId = requestId
  const done = result.done
  const expiresAt = prepare.expiresAt.getTime()
  // Register before sending: the reply may arrive before the 202 does.
  let resolveReply
  const replied = new Promise((resolve) => { resolveReply = resolve })
  pending.set(requestId.toLowerCase(), { resolve: resolveReply, expiresAt })
  let timer
  const expired = new Promise((resolve) => {
    timer = setTimeout(() => resolve('expired'), Math.max(0, expiresAt - Date.now()))
  })
  let res
  try {
    res = await common.httpPost(msg.url, headers, raw, msg.timeoutMs || 5000)
  } catch (err) {
    pending.delete(requestId.toLowerCase())
    clearTimeout(timer)
    return done(common.reject('T01', address, 'peer unreachable'), 'http-error', { failure: err.message })
  }
  result.response = { status: res.status, headers: res.headers, body: res.body.toString('hex') }
  if (res.status !== 202) {
    pending.delete(requestId.toLowerCase())
    clearTimeout(timer)
    if (res.status === 200 && res.body.length) return done(res.body, 'sync-body')
    const code = res.status >= 500 ? 'T00' : res.status >= 400 ? 'F00' : 'T00'
    return done(common.reject(code, address, 'HTTP ' + res.status), 'http-status')
  }
  const outcome = await Promise.race([replied, expired])
  clearTimeout(timer)
  if (outcome === 'expired') {
    pending.delete(requestId.toLowerCase())
    return done(common.reject('R00', address, 'no reply before expiry'), 'expired')
  }
  const { body, parsed } = outcome
  if (parsed.fulfillment && !common.sha256(parsed.fulfillment).equals(prepare.executionCondition)) {
    return done(common.reject('F05', address, 'wrong fulfillment'), 'wrong-fulfillment')
  }
  return done(body, 'callback')
}

common.runPeer({
  name: 'rfc35',
  defaults: { port: 0, address: 'test.rfc35', callbackPath: '/incoming/ilp' },
  serve,
  send,
  commands: () => ({
    callback: async (msg) => {
      callbackBehaviour = { failFirst: msg.failFirst || 0, status: msg.status || 503, hangFirst: msg.hangFirst || 0 }
      return { ok: true }
    },
    deliveries: async () => ({ deliveries: deliveries.slice() }),
    post: async (msg) => {
      const res = await common.httpPost(msg.url, msg.headers || {}, Buffer.from(msg.body || '', 'hex'), 5000)
      return { status: res.status, body: res.body.toString('hex') }
    }
  })
})
