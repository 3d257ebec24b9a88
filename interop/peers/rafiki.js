'use strict'
// An emulated rafiki connector (interledger/rafiki, packages/backend/src/
// payment-method/ilp/connector/core/), applying its ILP-over-HTTP rules as read
// from its sources at commit 884c4bcfe657f3a04563e95ee34dc096e460d805.
// Rules and citations: docs/peering/rules.md, section "rafiki".
//
//   node interop/peers/rafiki.js '<json config>'
//
// Config (all optional):
//   port       0 (default: any free port), a port, or null (client only)
//   address    its ILP address (triggeredBy of the Rejects it makes); "test.rafiki"
//   peers      {"<peer id>": {"incomingTokens": ["t1", "t2", ...]}}
//              (rafiki looks a peer up by the token alone; several tokens per peer)
//   outgoing   {"endpoint": "<url>", "authToken": "<token>"}: defaults for "send"
//   handler    a handler spec (common.js): what it answers to accepted Prepares
//
// Commands (line protocol of interop/control.js; see tests/jsinterop.py):
//   send {prepare: hex, endpoint?, authToken?}  -> {reply: hex, replyInfo, stage,
//        request: {url, headers}, response: {status, headers, body hex} | null, failure?}
//        `reply` is what rafiki hands back upstream for this Prepare: the peer's
//        reply bytes unchanged, or the Reject rafiki makes (stage says which rule).
//   handler {...spec}, received, requests, clear, info, stop.
//   peers {peers: {...}} replaces the peer table.

const common = require('./common')
const { IlpPacket } = common

const CONTENT_TYPE = 'application/octet-stream' // middleware/ilp-packet.ts CONTENT_TYPE
const AXIOS_VERSION = '1.16.0' // packages/backend/package.json
const AXIOS_TIMEOUT_MS = 30000 // controllers/client.ts: Axios.create({ timeout: 30_000 })

// middleware/auth.ts getBearerToken: split on ' ', exactly two parts, /^Bearer$/i.
function getBearerToken (authorization) {
  if (!authorization) return undefined
  const parts = authorization.split(' ')
  if (parts.length === 2) {
    if (/^Bearer$/i.test(parts[0])) return parts[1]
  }
  return undefined
}

function text (status, message, rule) {
  // Koa's default error handler: text/plain, the message when status < 500.
  return {
    status,
    headers: { 'content-type': 'text/plain; charset=utf-8' },
    body: status < 500 ? message : 'Internal Server Error',
    rule
  }
}

async function serve (req, body, ctx) {
  const { config, recorder } = ctx
  // No method or path routing: every request goes through auth, then ilp-packet.
  const token = getBearerToken(req.headers.authorization)
  if (!token) return text(401, 'Bearer token required in Authorization header', 'auth:no-bearer-token')
  let peer = null
  for (const [id, p] of Object.entries(config.peers || {})) {
    if ((p.incomingTokens || []).includes(token)) { peer = id; break }
  }
  if (!peer) return text(401, 'Access Denied - Invalid Token', 'auth:unknown-token')
  // Koa ctx.request.type: Content-Type up to the first ';', compared exactly.
  const type = (req.headers['content-type'] || '').split(';')[0]
  if (type !== CONTENT_TYPE) {
    return text(400, 'Expected Content-Type of ' + CONTENT_TYPE, 'content-type')
  }
  let prepare
  try {
    prepare = IlpPacket.deserializeIlpPrepare(body) // ilp-packet 3.x: lenient
  } catch (e) {
    return text(500, '', 'prepare-unparsable')
  }
  recorder.prepare(body)
  const reply = await ctx.handler.answer(prepare, body)
  return {
    status: 200,
    headers: { 'content-type': CONTENT_TYPE }, // Koa: Buffer body -> application/octet-stream
    body: reply,
    rule: 'ok'
  }
}

// services/client.ts sendToPeer + the outgoing middlewares it runs inside
// (index.ts compose order: ... expire, validate-fulfillment, client controller;
// errors become Rejects in error-handler.ts).
async function send (msg, ctx) {
  const { config } = ctx
  const outgoing = config.outgoing || {}
  const endpoint = msg.endpoint || msg.url || outgoing.endpoint
  const authToken = msg.authToken !== undefined ? msg.authToken : outgoing.authToken
  const address = config.address
  const raw = Buffer.from(msg.prepare, 'hex')
  const prepare = IlpPacket.deserializeIlpPrepare(raw)
  // Header order as axios 1.x on node sends them.
  const headers = {
    Accept: 'application/json, text/plain, */*',
    'Content-Type': CONTENT_TYPE,
    Authorization: `Bearer ${authToken}`,
    'User-Agent': 'axios/' + AXIOS_VERSION,
    'Content-Length': String(raw.length),
    'Accept-Encoding': 'gzip, compress, deflate, br'
  }
  const result = common.clientResult({ url: endpoint, headers })
  const done = result.done
  // errorToIlpReject(serverAddress, err) for ILP errors; T00 otherwise.
  const internal = () => common.reject('T00', address, 'unexpected internal error')

  // expire.ts: R00 'packet expired.' if already expired or when expiresAt passes.
  const duration = prepare.expiresAt.getTime() - Date.now()
  if (duration <= 0) return done(common.reject('R00', address, 'packet expired.'), 'expired-before-send')
  let timer
  const expiry = new Promise((resolve) => { timer = setTimeout(() => resolve('expired'), duration) })
  const agent = new (require('http').Agent)({ keepAlive: true })
  const call = common.httpPost(endpoint, headers, raw, AXIOS_TIMEOUT_MS, agent)
    .then((res) => ({ res }), (err) => ({ err }))
  const outcome = await Promise.race([call, expiry])
  clearTimeout(timer)
  agent.destroy()
  if (outcome === 'expired') return done(common.reject('R00', address, 'packet expired.'), 'expired')
  if (outcome.err) {
    return done(internal(), 'http-error', { failure: outcome.err.kind + ': ' + outcome.err.message })
  }
  const res = outcome.res
  result.response = { status: res.status, headers: res.headers, body: res.body.toString('hex') }
  // axios validateStatus: 2xx resolves, anything else throws (AxiosError -> T00).
  if (!(res.status >= 200 && res.status < 300)) return done(internal(), 'http-status')
  // response.rawReply = res.data: deserializeIlpReply (lenient); keeps the raw bytes.
  let parsed
  try {
    parsed = IlpPacket.deserializeIlpReply(res.body)
  } catch (e) {
    return done(internal(), 'reply-unparsable', { failure: common.control.describe(e) })
  }
  // validate-fulfillment.ts: WrongConditionError (F05).
  if (parsed.fulfillment && !common.sha256(parsed.fulfillment).equals(prepare.executionCondition)) {
    return done(common.reject('F05', address, 'fulfillment did not match expected value.'), 'wrong-fulfillment')
  }
  return done(res.body, 'peer')
}

common.runPeer({
  name: 'rafiki',
  defaults: { port: 0, address: 'test.rafiki', peers: {} },
  serve,
  send,
  commands: (ctx) => ({
    peers: async (msg) => { ctx.config.peers = msg.peers || {}; return { ok: true } }
  })
})
