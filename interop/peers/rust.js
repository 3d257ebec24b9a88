'use strict'
// An emulated interledger-rs node (interledger/interledger-rs at commit
// 544b6dbcd299087d16babc3377e4e014f87d68ec): crates/interledger-http server.rs
// and client.rs, with the ValidatorService around the outgoing side and the
// node's warp rejection handler.  Rules and citations: docs/peering/rules.md,
// section "interledger-rs".
//
//   node interop/peers/rust.js '<json config>'
//
// Config (all optional):
//   port      0 (any free port), a port, or null (client only)
//   address   its ILP address (triggeredBy of the Rejects it makes); "test.rust"
//   accounts  {"<username>": {"token": "<ilp_over_http_incoming_token>"}}
//   strict    false (default, as ilp-node is built: interledger-packet without
//             its "strict" feature); true: reject trailing bytes, inner or outer,
//             in the Prepares it receives and the replies it reads
//   outgoing  {"url", "token"}: defaults for "send"
//   handler   a handler spec (common.js)
//
// Commands: send {prepare: hex, url?, token?} -> {reply, replyInfo, stage, request,
//   response, failure?}; handler, received, requests, clear, info, stop;
//   accounts {accounts} replaces the account table.

const common = require('./common')
const { IlpPacket } = common

const MAX_PACKET_SIZE = 40000 // server.rs
const BEARER_TOKEN_START = 7 // server.rs
const CLIENT_TIMEOUT_MS = 30000 // client.rs ClientBuilder .timeout(30 s)
const USERNAME = /^\w{2,32}$/u // interledger-service username.rs (after NFKC)

function apiError (status, title, type, detail, rule) {
  const obj = { type: type || 'about:blank', title, status }
  if (detail !== undefined) obj.detail = detail
  obj.datetime = new Date().toISOString()
  return { status, headers: { 'content-type': 'application/problem+json' }, body: JSON.stringify(obj), rule }
}

function warpText (status, message, rule) {
  return { status, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: message, rule }
}

// interledger-packet Prepare::try_from: envelope, MIN_LEN, 17 ASCII digits that
// make a valid date, address regex; trailing bytes only with "strict".
function parsePrepare (buf, strict) {
  const layout = common.oerLayout(buf)
  if (layout.type !== 12) throw new Error('unexpected packet type ' + layout.type)
  if (strict && layout.outerTrailing) throw new Error('Invalid Packet: Unexpected outer trailing bytes')
  if (strict && layout.innerTrailing) throw new Error('Invalid Packet: Unexpected inner trailing bytes')
  const prepare = IlpPacket.deserializeIlpPrepare(buf)
  const lenBytes = buf[1] < 0x80 ? 1 : 1 + (buf[1] & 0x7f)
  const ts = buf.slice(1 + lenBytes + 8, 1 + lenBytes + 8 + 17).toString('latin1')
  if (!/^[0-9]{17}$/.test(ts) || isNaN(prepare.expiresAt.getTime())) throw new Error('timestamp conversion')
  return prepare
}

// Packet::try_from on a response body: Fulfill or Reject (a Prepare is "_").
function parseReply (buf, strict) {
  const layout = common.oerLayout(buf)
  if (strict && (layout.outerTrailing || layout.innerTrailing)) throw new Error('trailing bytes')
  if (layout.type !== 13 && layout.type !== 14) throw new Error('not a reply')
  return IlpPacket.deserializeIlpReply(buf)
}

async function serve (req, body, ctx) {
  const { config } = ctx
  const path = req.url.split('?')[0]
  const segs = path.split('/')
  // warp::post() / path("accounts") / param::<Username> / path("ilp") / end
  const pathOk = segs.length === 4 && segs[0] === '' && segs[1] === 'accounts' && segs[3] === 'ilp'
  let username = null
  if (pathOk) {
    try { username = decodeURIComponent(segs[2]).normalize('NFKC') } catch (e) { username = null }
    if (username !== null && !USERNAME.test(username)) username = null
  }
  if (!pathOk || username === null) return warpText(404, '', 'path')
  if (req.method !== 'POST') return apiError(405, 'Method Not Allowed', null, undefined, 'method')
  const authorization = req.headers.authorization
  if (authorization === undefined) return warpText(400, 'Missing request header "authorization"', 'auth:missing-header')
  const cl = req.headers['content-length']
  if (cl === undefined) return warpText(411, 'A content-length header is required', 'content-length:missing')
  if (Number(cl) > MAX_PACKET_SIZE) return warpText(413, 'The request payload is too large', 'content-length:too-large')
  // get_account: header shorter than 7 bytes -> 401; token = header[7..], scheme never checked.
  const auth = Buffer.from(authorization, 'latin1')
  if (auth.length < BEARER_TOKEN_START) {
    return apiError(401, 'Unauthorized', null, 'provided token was not a bearer token', 'auth:too-short')
  }
  const token = auth.slice(BEARER_TOKEN_START).toString('latin1')
  const account = (config.accounts || {})[username]
  if (!account) {
    return apiError(404, 'Account Not Found', 'https://errors.interledger.org/http-api/accounts/account-not-found',
      'account `' + username + '` was not found', 'auth:unknown-account')
  }
  if (account.token === undefined || account.token !== token) {
    return apiError(401, 'Unauthorized', null, 'account `' + username + '` is not authorized for this action', 'auth:token-mismatch')
  }
  // No Content-Type check at all.
  let prepare
  try {
    prepare = parsePrepare(body, !!config.strict)
  } catch (e) {
    return apiError(400, 'Invalid Packet', 'https://errors.interledger.org/http-api/ilp-over-http/invalid-packet',
      undefined, 'prepare-unparsable')
  }
  ctx.recorder.prepare(body)
  let reply
  if (prepare.expiresAt.getTime() < Date.now()) {
    // ValidatorService (incoming): expired -> R00, empty message.
    reply = common.reject('R00', config.address, '')
  } else {
    reply = await ctx.handler.answer(prepare, body)
  }
  return { status: 200, headers: { 'content-type': 'application/octet-stream' }, body: reply, rule: 'ok' }
}

// ValidatorService::send_request around HttpClientService::send_request.
async function send (msg, ctx) {
  const { config } = ctx
  const out = config.outgoing || {}
  const url = msg.url || out.url
  const token = msg.token !== undefined ? msg.token : (out.token !== undefined ? out.token : '')
  const address = config.address
  const strict = !!config.strict
  const raw = Buffer.from(msg.prepare, 'hex')
  const prepare = IlpPacket.deserializeIlpPrepare(raw)
  const u = new URL(url)
  // reqwest: default headers (content-type), then the request's, then accept */*.
  const headers = {
    'content-type': 'application/octet-stream',
    authorization: `Bearer ${token}`,
    accept: '*/*',
    host: u.host,
    'content-length': String(raw.length)
  }
  const result = common.clientResult({ url, headers })
  const done = result.done
  const left = prepare.expiresAt.getTime() - Date.now()
  if (left <= 0) return done(common.reject('R00', address, ''), 'expired-before-send')
  let timer
  const expiry = new Promise((resolve) => { timer = setTimeout(() => resolve('timeout'), left) })
  const agent = new (require('http').Agent)({ keepAlive: true })
  const call = common.httpPost(url, headers, raw, CLIENT_TIMEOUT_MS, agent)
    .then((res) => ({ res }), (err) => ({ err }))
  const outcome = await Promise.race([call, expiry])
  clearTimeout(timer)
  agent.destroy()
  if (outcome === 'timeout') return done(common.reject('R00', address, ''), 'timeout')
  if (outcome.err) {
    const m = 'Error sending ILP over HTTP request: ' + outcome.err.message
    return done(common.reject('T01', address, m), 'http-error', { failure: outcome.err.kind + ': ' + outcome.err.message })
  }
  const res = outcome.res
  result.response = { status: res.status, headers: res.headers, body: res.body.toString('hex') }
  // error_for_status: 4xx -> F02, 5xx -> T01, empty message.
  if (res.status >= 400 && res.status < 500) return done(common.reject('F02', address, ''), 'http-status')
  if (res.status >= 500 && res.status < 600) return done(common.reject('T01', address, ''), 'http-status')
  let parsed
  try {
    parsed = parseReply(res.body, strict)
  } catch (e) {
    return done(common.reject('T01', address, ''), 'reply-unparsable', { failure: common.control.describe(e) })
  }
  if (parsed.fulfillment && !common.sha256(parsed.fulfillment).equals(prepare.executionCondition)) {
    return done(common.reject('F09', address, 'Fulfillment did not match condition'), 'wrong-fulfillment')
  }
  return done(res.body, 'peer') // the parsed packet keeps its buffer: bytes pass through
}

common.runPeer({
  name: 'rust',
  defaults: { port: 0, address: 'test.rust', accounts: {}, strict: false },
  serve,
  send,
  commands: (ctx) => ({
    accounts: async (msg) => { ctx.config.accounts = msg.accounts || {}; return { ok: true } }
  })
})
