'use strict'
// An emulated Java connector: interledger4j/ilpv4-connector (server side, at
// commit e00038b75fbae57bce668ddcb1baeae3e51aa09c) with hyperledger/quilt's
// link-ilp-over-http (client side, at 0bc5c0293e96826fed1448be69bd9f7fa4c921c1).
// Rules and citations: docs/peering/rules.md, section "Java".
//
//   node interop/peers/java.js '<json config>'
//
// Config (all optional):
//   port             0 (any free port), a port, or null (client only)
//   address          operator address (triggeredBy; ILP-Operator-Address header)
//   accounts         {"<accountId>": {"authType": "SIMPLE", "token": "..."}
//                     | {"authType": "JWT_HS_256", "secret": "...", "subject": "...",
//                        "issuer"?: "...", "audience"?: "..."}   (issuer/audience are
//                        accepted but NOT checked for HS256, as in the connector)
//                     plus "accessTokens": ["...", ...] (the access-token API)}
//   decisionCacheMs  how long an auth decision is cached per (account, token):
//                    1,800,000 (30 min, the connector's Caffeine cache); 0 disables
//   outgoing         {"url", "authType": "SIMPLE"|"JWT_HS_256", "token" | "secret"
//                     + "subject", "tokenExpirySeconds"?}: defaults for "send"
//   handler          a handler spec (common.js)
//
// Commands: send {prepare: hex, ...outgoing overrides} -> {reply, replyInfo, stage,
//   request, response, failure?}; handler, received, requests, clear, info, stop;
//   accounts {accounts} replaces the account table (and empties the decision cache).

const common = require('./common')
const { IlpPacket } = common

const OCTET_STREAM = 'application/octet-stream'
const ILP_OCTET_STREAM = 'application/ilp+octet-stream' // IlpHttpController (deprecated, accepted)
const PROBLEM = 'application/problem+json'
const OKHTTP_VERSION = '4.9.0' // quilt pom.xml okhttp.version
const READ_TIMEOUT_MS = 30000 // IlpOverHttpConnectionSettings.readTimeoutMillis

function problem (status, title, detail, rule) {
  const obj = { title, status }
  if (detail !== undefined) obj.detail = detail
  return { status, headers: { 'content-type': PROBLEM }, body: JSON.stringify(obj), rule }
}

// BearerTokenSecurityContextRepository.parseToken
function parseToken (authHeader) {
  if (authHeader === undefined) return null
  if (authHeader.startsWith('Basic ')) return null
  if (authHeader.indexOf('Bearer ') === 0) return authHeader.substring(7)
  return authHeader
}

// Spring's MediaType parse (type/subtype lower-cased, parameters dropped).
function mediaType (value) {
  const v = (value || '').split(';')[0].trim().toLowerCase()
  return v
}

// java-jwt 3.9.0 JWTVerifier with JWT.require(HMAC256(secret)).withSubject(subject),
// leeway 0; JwtHs256AuthenticationProvider never sets issuer/audience.
// Returns null when valid, else the JWTVerificationException message.
function verifyHs256 (decoded, secret, subject) {
  if (decoded.header.alg !== 'HS256') {
    return "The provided Algorithm doesn't match the one defined in the JWT's Header."
  }
  const expected = common.hmacSha256(secret, decoded.signingInput)
  if (!common.timingSafeEqualBuf(expected, decoded.signature)) {
    return 'The Token\'s Signature resulted invalid when verified using the Algorithm: HmacSHA256'
  }
  const nowSec = Math.floor(Date.now() / 1000) // java-jwt truncates "today" to seconds
  const p = decoded.payload
  if (typeof p.exp === 'number' && nowSec > p.exp) {
    return 'The Token has expired on ' + new Date(p.exp * 1000).toISOString() + '.'
  }
  if (typeof p.nbf === 'number' && nowSec < p.nbf) {
    return "The Token can't be used before " + new Date(p.nbf * 1000).toISOString() + '.'
  }
  if (typeof p.iat === 'number' && nowSec < p.iat) {
    return "The Token can't be used before " + new Date(p.iat * 1000).toISOString() + '.'
  }
  if (p.sub !== subject) return "The Claim 'sub' value doesn't match the required one."
  return null
}

// IlpOverHttpAuthenticationProvider.authenticate for one (account, token).
// Returns {ok: true} or {ok: false, detail}.
function authenticate (ctx, accountId, token) {
  const account = (ctx.config.accounts || {})[accountId]
  if (!account) return { ok: false, detail: 'Invalid credentials: ' + accountId, rule: 'auth:unknown-account' }
  const cacheMs = ctx.config.decisionCacheMs
  const key = accountId + '\u0000' + token
  const cached = ctx.decisions.get(key)
  if (cached && cacheMs && Date.now() - cached.at < cacheMs) {
    return cached.decision.ok ? cached.decision : { ok: false, detail: 'Authentication failed for principal: ' + accountId, rule: cached.decision.rule + ' (cached)' }
  }
  let decision
  const viaAccessToken = () => (account.accessTokens || []).includes(token)
  if ((account.authType || 'SIMPLE') === 'SIMPLE') {
    decision = token === account.token ? { ok: true, rule: 'auth:simple' } : { ok: false, rule: 'auth:simple-mismatch' }
  } else if (account.authType === 'JWT_HS_256') {
    let decoded = null
    try {
      decoded = common.decodeJwt(token)
    } catch (e) {
      decision = { ok: false, rule: 'auth:jwt-undecodable' } // JWTDecodeException -> notAuthenticated
    }
    if (decoded) {
      const failure = verifyHs256(decoded, account.secret, account.subject)
      if (failure) {
        // Thrown out of the cache loader: not cached, no access-token fallback.
        return { ok: false, detail: 'Authentication failed for principal: ' + accountId + '. ' + failure, rule: 'auth:jwt-invalid' }
      }
      decision = { ok: true, rule: 'auth:jwt' }
    }
  } else {
    return { ok: false, detail: 'Unable to validate token due to system error', rule: 'auth:unsupported-type' }
  }
  if (!decision.ok && viaAccessToken()) decision = { ok: true, rule: 'auth:access-token' }
  if (cacheMs) ctx.decisions.set(key, { at: Date.now(), decision })
  if (decision.ok) return decision
  return { ok: false, detail: 'Authentication failed for principal: ' + accountId, rule: decision.rule }
}

const ILP_PATH = /^\/accounts\/([^/]+)\/ilp\/?$/ // SLASH_ACCOUNTS_ILP_PATH, trailing slash matched by Spring 5.2

async function serve (req, body, ctx) {
  const path = req.url.split('?')[0]
  const m = ILP_PATH.exec(path)
  const token = parseToken(req.headers.authorization)
  // Spring Security runs first.  No token -> anonymous -> 401 from the entry point.
  if (!m || req.method !== 'POST') {
    if (token === null) return problem(401, 'Unauthorized', 'Full authentication is required to access this resource', 'security:anonymous')
    if (!m) return problem(403, 'Forbidden', 'Access is denied', 'security:deny-all')
  }
  if (token === null) return problem(401, 'Unauthorized', 'Full authentication is required to access this resource', 'auth:no-token')
  const accountId = decodeURIComponent(m[1])
  const auth = authenticate(ctx, accountId, token)
  if (!auth.ok) return problem(401, 'Unauthorized', auth.detail, auth.rule)
  if (req.method !== 'POST') {
    return problem(405, 'Method Not Allowed', "Request method '" + req.method + "' not supported", 'method')
  }
  // consumes = {octet-stream, ilp+octet-stream}; no Content-Type counts as octet-stream.
  const ct = req.headers['content-type']
  const type = ct === undefined || ct === '' ? OCTET_STREAM : mediaType(ct)
  if (type !== OCTET_STREAM && type !== ILP_OCTET_STREAM) {
    return problem(415, 'Unsupported Media Type', "Content type '" + ct + "' not supported", 'content-type')
  }
  // produces = {octet-stream, problem+json}
  const accept = req.headers.accept
  if (accept) {
    const ok = accept.split(',').map(mediaType).some((t) =>
      t === '*/*' || t === 'application/*' || t === OCTET_STREAM || t === PROBLEM)
    if (!ok) return problem(406, 'Not Acceptable', 'Could not find acceptable representation', 'accept')
  }
  // OerPreparePacketHttpMessageConverter: quilt codec, lenient about trailing bytes.
  let prepare
  try {
    prepare = IlpPacket.deserializeIlpPrepare(body)
  } catch (e) {
    let type = null
    try { type = IlpPacket.deserializeIlpPacket(body).type } catch (e2) {}
    if (type === IlpPacket.Type.TYPE_ILP_FULFILL || type === IlpPacket.Type.TYPE_ILP_REJECT) {
      // A readable packet of the wrong type: argument type mismatch in the controller.
      return problem(500, 'Internal Server Error', 'argument type mismatch', 'not-a-prepare')
    }
    // WebExceptionHandler: 400 with an F00 Reject as the body.
    return {
      status: 400,
      headers: { 'content-type': OCTET_STREAM },
      body: common.reject('F00', ctx.config.address, 'Invalid ILP Prepare Packet'),
      rule: 'prepare-unparsable'
    }
  }
  ctx.recorder.prepare(body)
  const reply = await ctx.handler.answer(prepare, body)
  return { status: 200, headers: { 'content-type': OCTET_STREAM }, body: reply, rule: 'ok' }
}

// JwtHs256BearerTokenSupplier: {sub, exp}, exp = now + tokenExpiry (15 min default),
// cached per subject with expireAfterAccess(tokenExpiry.toMinutes(), MINUTES)
// (30 min default) -- so an expired token keeps being sent while the link is
// busy.  toMinutes() truncates: an expiry under one minute gives Guava a zero
// duration, which disables the cache (a fresh token per request).
function bearerToken (ctx, out) {
  if ((out.authType || 'SIMPLE') === 'SIMPLE') return out.token
  const expiryMs = out.tokenExpirySeconds ? out.tokenExpirySeconds * 1000 : null
  const accessMs = expiryMs !== null ? Math.floor(out.tokenExpirySeconds / 60) * 60 * 1000 : 30 * 60 * 1000
  const key = out.subject + '\u0000' + out.secret
  const hit = ctx.jwtCache.get(key)
  const now = Date.now()
  if (hit && accessMs > 0 && now - hit.lastAccess < accessMs) {
    hit.lastAccess = now
    return hit.token
  }
  const exp = Math.floor((now + (expiryMs || 15 * 60 * 1000)) / 1000)
  const token = common.signHs256(out.secret, { sub: out.subject, exp }, { alg: 'HS256', typ: 'JWT' })
  ctx.jwtCache.set(key, { token, lastAccess: now })
  return token
}

// IlpOverHttpLink.sendPacket inside the connector's DefaultLinkFilterChain (expiry)
// and ValidateFulfillmentPacketFilter.
async function send (msg, ctx) {
  const { config } = ctx
  const out = Object.assign({}, config.outgoing || {}, msg.outgoing || {})
  for (const k of ['url', 'authType', 'token', 'secret', 'subject', 'tokenExpirySeconds']) {
    if (msg[k] !== undefined) out[k] = msg[k]
  }
  const address = config.address
  const raw = Buffer.from(msg.prepare, 'hex')
  const prepare = IlpPacket.deserializeIlpPrepare(raw)
  const u = new URL(out.url)
  const headers = {
    Accept: OCTET_STREAM,
    'Content-Type': OCTET_STREAM,
    'Cache-Control': 'private, max-age=0, no-cache',
    Pragma: 'no-cache',
    'ILP-Operator-Address': address,
    Authorization: 'Bearer ' + bearerToken(ctx, out),
    'Content-Length': String(raw.length),
    Host: u.host,
    Connection: 'Keep-Alive',
    'Accept-Encoding': 'gzip',
    'User-Agent': 'okhttp/' + OKHTTP_VERSION
  }
  const result = common.clientResult({ url: out.url, headers })
  const done = result.done
  // DefaultLinkFilterChain: R02 if no time left; get(timeout.getSeconds(), SECONDS).
  const left = prepare.expiresAt.getTime() - Date.now()
  if (left <= 0) {
    return done(common.reject('R02', address, 'The connector could not forward the payment, because the timeout was too low'), 'expired-before-send')
  }
  const waitMs = Math.floor(left / 1000) * 1000
  let timer
  const expiry = new Promise((resolve) => { timer = setTimeout(() => resolve('timeout'), waitMs) })
  const agent = new (require('http').Agent)({ keepAlive: true })
  const call = common.httpPost(out.url, headers, raw, READ_TIMEOUT_MS, agent)
    .then((res) => ({ res }), (err) => ({ err }))
  const outcome = await Promise.race([call, expiry])
  clearTimeout(timer)
  agent.destroy()
  if (outcome === 'timeout') return done(common.reject('R00', address, 'Transfer Timed-out'), 'timeout')
  if (outcome.err) {
    // IOException -> LinkException -> ExecutionException -> T00 "Internal Error: ..."
    const m = 'Unable to sendPacket. preparePacket=' + prepare.destination + ' error=' + outcome.err.message
    return done(common.reject('T00', address, 'Internal Error: ' + m), 'http-error', { failure: outcome.err.kind + ': ' + outcome.err.message })
  }
  const res = outcome.res
  result.response = { status: res.status, headers: res.headers, body: res.body.toString('hex') }
  let reply
  if (res.status >= 200 && res.status < 300) {
    try {
      const parsed = IlpPacket.deserializeIlpReply(res.body) // quilt codec: lenient
      if (parsed.fulfillment && !common.sha256(parsed.fulfillment).equals(prepare.executionCondition)) {
        return done(common.reject('F05', address, 'Received incorrect fulfillment'), 'wrong-fulfillment')
      }
      // The connector re-serializes the parsed packet: trailing bytes are dropped.
      reply = parsed.fulfillment ? IlpPacket.serializeIlpFulfill(parsed) : IlpPacket.serializeIlpReject(parsed)
      return done(reply, 'peer')
    } catch (e) {
      return done(common.reject('T00', address, 'Internal Error: ' + common.control.describe(e)), 'reply-unparsable', { failure: common.control.describe(e) })
    }
  }
  const bodyText = res.body.toString('utf8')
  let title = null
  try {
    const p = JSON.parse(bodyText)
    if (p && typeof p === 'object' && typeof p.title === 'string') title = p.title
  } catch (e) {}
  if (res.status >= 400 && res.status < 500) {
    let custom = null
    if (res.status === 401 || res.status === 403) {
      custom = 'Unable to connect to remote ILP-over-HTTP Link: Invalid Bearer Token. response=Response{protocol=http/1.1, code=' +
        res.status + ', message=' + res.statusMessage + ', url=' + out.url + '}'
    }
    const message = custom || title || bodyText
    return done(common.reject('F00', address, message), 'http-status')
  }
  return done(common.reject('T00', address, title || bodyText), 'http-status')
}

common.runPeer({
  name: 'java',
  defaults: { port: 0, address: 'test.java', accounts: {}, decisionCacheMs: 30 * 60 * 1000 },
  serve,
  send,
  commands: (ctx) => {
    ctx.decisions = new Map()
    ctx.jwtCache = new Map()
    return {
      accounts: async (msg) => { ctx.config.accounts = msg.accounts || {}; ctx.decisions.clear(); return { ok: true } }
    }
  }
})
