'use strict'
// Self-test of the emulated peers: each emulated client talks to its own
// emulated server, and each server's negative rules are exercised with raw HTTP.
// Drives the peers exactly as a test would: child processes speaking the line
// protocol.   node interop/peers/selftest.js   (exit 0: all passed)

const assert = require('assert')
const crypto = require('crypto')
const http = require('http')
const path = require('path')
const readline = require('readline')
const { spawn } = require('child_process')
const IlpPacket = require('ilp-packet')

// --- driving a peer over the line protocol -------------------------------------

function start (script, config) {
  const child = spawn(process.execPath, [path.join(__dirname, script), JSON.stringify(config)], {
    stdio: ['pipe', 'pipe', 'pipe']
  })
  let stderr = ''
  child.stderr.on('data', (d) => { stderr += d })
  const pending = new Map()
  let nextId = 1
  let readyResolve, readyReject
  const ready = new Promise((resolve, reject) => { readyResolve = resolve; readyReject = reject })
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    const msg = JSON.parse(line)
    if (msg.event === 'ready') return readyResolve(msg)
    if (msg.event === 'fatal') return readyReject(new Error(script + ': ' + msg.error + '\n' + stderr))
    const p = pending.get(msg.id)
    if (!p) return
    pending.delete(msg.id)
    if (msg.error !== undefined) p.reject(new Error(msg.error))
    else p.resolve(msg)
  })
  child.on('exit', (code) => readyReject(new Error(script + ' exited ' + code + '\n' + stderr)))
  const peer = {
    child,
    ready,
    stderr: () => stderr,
    cmd (cmd, fields) {
      const id = nextId++
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject })
        child.stdin.write(JSON.stringify(Object.assign({}, fields || {}, { id, cmd })) + '\n')
      })
    },
    stop () {
      return new Promise((resolve) => {
        child.once('exit', resolve)
        child.stdin.write('{"id":0,"cmd":"stop"}\n')
        child.stdin.end()
      })
    }
  }
  return ready.then((info) => Object.assign(peer, { info, port: info.port }))
}

// --- packets --------------------------------------------------------------------------

function makePrepare (opts) {
  const o = opts || {}
  const fulfillment = o.fulfillment || crypto.randomBytes(32)
  const condition = crypto.createHash('sha256').update(fulfillment).digest()
  return IlpPacket.serializeIlpPrepare({
    amount: '10',
    expiresAt: new Date(Date.now() + (o.expiresInMs || 10000)),
    executionCondition: condition,
    destination: o.destination || 'test.peer.bob',
    data: Buffer.concat([fulfillment, Buffer.from('hello')])
  })
}

function rawPost (port, urlPath, headers, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: urlPath, headers, agent: false }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

function b64url (b) {
  return Buffer.from(b).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_')
}
function jwt (secret, payload, header) {
  const h = b64url(JSON.stringify(header || { alg: 'HS256', typ: 'JWT' }))
  const p = b64url(JSON.stringify(payload))
  return h + '.' + p + '.' + b64url(crypto.createHmac('sha256', secret).update(h + '.' + p).digest())
}

const OCT = 'application/octet-stream'

// --- the cases ----------------------------------------------------------------------

const results = []
async function check (name, fn) {
  try {
    await fn()
    results.push([name, null])
    console.log('ok   ' + name)
  } catch (err) {
    results.push([name, err])
    console.log('FAIL ' + name + '\n     ' + String(err && err.stack || err).split('\n').join('\n     '))
  }
}

function replyType (hex) {
  return IlpPacket.deserializeIlpReply(Buffer.from(hex, 'hex'))
}

async function rafikiCases () {
  const server = await start('rafiki.js', { address: 'test.rafiki-b', peers: { alice: { incomingTokens: ['tok-1', 'tok-2'] } } })
  const client = await start('rafiki.js', { port: null, address: 'test.rafiki-a' })
  const url = `http://127.0.0.1:${server.port}/anything/at/all`
  const prepare = makePrepare()
  try {
    await check('rafiki: client -> server fulfills', async () => {
      const r = await client.cmd('send', { prepare: prepare.toString('hex'), endpoint: url, authToken: 'tok-1' })
      assert.strictEqual(r.stage, 'peer')
      assert.strictEqual(r.replyInfo.type, 'fulfill')
      assert.strictEqual(r.request.headers['Content-Type'], OCT)
      assert.strictEqual(r.request.headers.Authorization, 'Bearer tok-1')
      const reqs = (await server.cmd('requests')).requests
      assert.strictEqual(reqs[reqs.length - 1].headers['content-type'], OCT)
      assert.strictEqual(reqs[reqs.length - 1].headers.accept, 'application/json, text/plain, */*')
      const got = (await server.cmd('received')).received
      assert.deepStrictEqual(got, [prepare.toString('hex')])
    })
    await check('rafiki: second incoming token of the same peer works', async () => {
      const r = await client.cmd('send', { prepare: makePrepare().toString('hex'), endpoint: url, authToken: 'tok-2' })
      assert.strictEqual(r.replyInfo.type, 'fulfill')
    })
    await check('rafiki: wrong token -> 401; client makes T00', async () => {
      const r = await client.cmd('send', { prepare: makePrepare().toString('hex'), endpoint: url, authToken: 'nope' })
      assert.strictEqual(r.response.status, 401)
      assert.strictEqual(Buffer.from(r.response.body, 'hex').toString(), 'Access Denied - Invalid Token')
      assert.strictEqual(r.replyInfo.code, 'T00')
      assert.strictEqual(r.replyInfo.message, 'unexpected internal error')
      assert.strictEqual(r.replyInfo.triggeredBy, 'test.rafiki-a')
    })
    const p = makePrepare()
    const cases = [
      ['no Authorization -> 401', { 'content-type': OCT }, 401, 'Bearer token required in Authorization header'],
      ['raw token (no scheme) -> 401', { authorization: 'tok-1', 'content-type': OCT }, 401, 'Bearer token required in Authorization header'],
      ['"Basic tok-1" -> 401', { authorization: 'Basic tok-1', 'content-type': OCT }, 401, 'Bearer token required in Authorization header'],
      ['two spaces -> 401', { authorization: 'Bearer  tok-1', 'content-type': OCT }, 401, 'Bearer token required in Authorization header'],
      ['lower-case "bearer" accepted', { authorization: 'bearer tok-1', 'content-type': OCT }, 200, null],
      ['application/ilp+octet-stream -> 400', { authorization: 'Bearer tok-1', 'content-type': 'application/ilp+octet-stream' }, 400, 'Expected Content-Type of application/octet-stream'],
      ['no Content-Type -> 400', { authorization: 'Bearer tok-1' }, 400, 'Expected Content-Type of application/octet-stream'],
      ['Application/Octet-Stream -> 400', { authorization: 'Bearer tok-1', 'content-type': 'Application/Octet-Stream' }, 400, 'Expected Content-Type of application/octet-stream'],
      ['octet-stream with a parameter accepted', { authorization: 'Bearer tok-1', 'content-type': OCT + '; x=y' }, 200, null]
    ]
    for (const [name, headers, status, text] of cases) {
      await check('rafiki server: ' + name, async () => {
        const r = await rawPost(server.port, '/', headers, p)
        assert.strictEqual(r.status, status)
        if (text !== null) assert.strictEqual(r.body.toString(), text)
        if (status === 200) assert.strictEqual(r.headers['content-type'], OCT)
      })
    }
    await check('rafiki server: garbage body -> 500', async () => {
      const r = await rawPost(server.port, '/', { authorization: 'Bearer tok-1', 'content-type': OCT }, Buffer.from('nope'))
      assert.strictEqual(r.status, 500)
    })
    await check('rafiki server: trailing bytes accepted (ilp-packet is lenient)', async () => {
      const r = await rawPost(server.port, '/', { authorization: 'Bearer tok-1', 'content-type': OCT }, Buffer.concat([makePrepare(), Buffer.from([0, 1])]))
      assert.strictEqual(r.status, 200)
    })
    await check('rafiki: 500 from peer -> T00; wrong fulfillment -> F05; reject passes', async () => {
      await server.cmd('handler', { mode: 'garbage' })
      let r = await client.cmd('send', { prepare: makePrepare().toString('hex'), endpoint: url, authToken: 'tok-1' })
      assert.strictEqual(r.stage, 'reply-unparsable'); assert.strictEqual(r.replyInfo.code, 'T00')
      await server.cmd('handler', { mode: 'fulfill', fulfillment: '00'.repeat(32) })
      r = await client.cmd('send', { prepare: makePrepare().toString('hex'), endpoint: url, authToken: 'tok-1' })
      assert.strictEqual(r.replyInfo.code, 'F05')
      await server.cmd('handler', { mode: 'reject', code: 'F99', message: 'no' })
      r = await client.cmd('send', { prepare: makePrepare().toString('hex'), endpoint: url, authToken: 'tok-1' })
      assert.strictEqual(r.stage, 'peer'); assert.strictEqual(r.replyInfo.code, 'F99')
      await server.cmd('handler', { mode: 'fulfill', delayMs: 2000 })
      r = await client.cmd('send', { prepare: makePrepare({ expiresInMs: 500 }).toString('hex'), endpoint: url, authToken: 'tok-1' })
      assert.strictEqual(r.replyInfo.code, 'R00'); assert.strictEqual(r.replyInfo.message, 'packet expired.')
      await server.cmd('handler', { mode: 'fulfill' })
    })
    await check('rafiki: connection refused -> T00', async () => {
      const r = await client.cmd('send', { prepare: makePrepare().toString('hex'), endpoint: 'http://127.0.0.1:1/', authToken: 'x' })
      assert.strictEqual(r.stage, 'http-error'); assert.strictEqual(r.replyInfo.code, 'T00')
    })
  } finally {
    await server.stop(); await client.stop()
  }
}

async function javaCases () {
  const secret = 'shh-secret'
  const server = await start('java.js', {
    address: 'test.java-b',
    accounts: {
      alice: { authType: 'SIMPLE', token: 'simple-tok', accessTokens: ['access-tok'] },
      carol: { authType: 'JWT_HS_256', secret, subject: 'carol', issuer: 'https://ignored.example/', audience: 'ignored' }
    }
  })
  const client = await start('java.js', { port: null, address: 'test.java-a' })
  const base = `http://127.0.0.1:${server.port}`
  try {
    await check('java: SIMPLE client -> server fulfills', async () => {
      const r = await client.cmd('send', { prepare: makePrepare().toString('hex'), url: base + '/accounts/alice/ilp', authType: 'SIMPLE', token: 'simple-tok' })
      assert.strictEqual(r.stage, 'peer'); assert.strictEqual(r.replyInfo.type, 'fulfill')
      const reqs = (await server.cmd('requests')).requests
      const h = reqs[reqs.length - 1].headers
      assert.strictEqual(h.accept, OCT); assert.strictEqual(h['content-type'], OCT)
      assert.strictEqual(h['ilp-operator-address'], 'test.java-a')
    })
    await check('java: JWT_HS_256 client -> server fulfills (sub + exp only)', async () => {
      const r = await client.cmd('send', { prepare: makePrepare().toString('hex'), url: base + '/accounts/carol/ilp', authType: 'JWT_HS_256', secret, subject: 'carol' })
      assert.strictEqual(r.replyInfo.type, 'fulfill')
      const tok = r.request.headers.Authorization.slice(7)
      const payload = JSON.parse(Buffer.from(tok.split('.')[1], 'base64').toString())
      assert.deepStrictEqual(Object.keys(payload), ['sub', 'exp'])
    })
    await check('java: wrong SIMPLE token -> 401 -> F00 (Invalid Bearer Token)', async () => {
      const r = await client.cmd('send', { prepare: makePrepare().toString('hex'), url: base + '/accounts/alice/ilp', authType: 'SIMPLE', token: 'bad' })
      assert.strictEqual(r.response.status, 401)
      assert.strictEqual(r.replyInfo.code, 'F00')
      assert.ok(r.replyInfo.message.startsWith('Unable to connect to remote ILP-over-HTTP Link: Invalid Bearer Token.'))
    })
    const p = makePrepare()
    const now = Math.floor(Date.now() / 1000)
    const cases = [
      ['raw token without "Bearer " accepted', '/accounts/alice/ilp', { authorization: 'simple-tok', 'content-type': OCT }, 200],
      ['access token accepted', '/accounts/alice/ilp', { authorization: 'Bearer access-tok', 'content-type': OCT }, 200],
      ['"bearer " (lower case) -> whole header is the token -> 401', '/accounts/alice/ilp', { authorization: 'bearer simple-tok', 'content-type': OCT }, 401],
      ['no Authorization -> 401', '/accounts/alice/ilp', { 'content-type': OCT }, 401],
      ['unknown account -> 401', '/accounts/zed/ilp', { authorization: 'Bearer simple-tok', 'content-type': OCT }, 401],
      ['ilp+octet-stream accepted', '/accounts/alice/ilp', { authorization: 'Bearer simple-tok', 'content-type': 'application/ilp+octet-stream' }, 200],
      ['no Content-Type accepted', '/accounts/alice/ilp', { authorization: 'Bearer simple-tok' }, 200],
      ['text/plain -> 415', '/accounts/alice/ilp', { authorization: 'Bearer simple-tok', 'content-type': 'text/plain' }, 415],
      ['Accept: application/json -> 406', '/accounts/alice/ilp', { authorization: 'Bearer simple-tok', 'content-type': OCT, accept: 'application/json' }, 406],
      ['wrong path with token -> 403', '/ilp', { authorization: 'Bearer simple-tok', 'content-type': OCT }, 403],
      ['JWT without sub -> 401', '/accounts/carol/ilp', { authorization: 'Bearer ' + jwt(secret, { exp: now + 60 }), 'content-type': OCT }, 401],
      ['JWT with wrong sub -> 401', '/accounts/carol/ilp', { authorization: 'Bearer ' + jwt(secret, { sub: 'alice', exp: now + 60 }), 'content-type': OCT }, 401],
      ['JWT without exp accepted', '/accounts/carol/ilp', { authorization: 'Bearer ' + jwt(secret, { sub: 'carol' }), 'content-type': OCT }, 200],
      ['expired JWT -> 401', '/accounts/carol/ilp', { authorization: 'Bearer ' + jwt(secret, { sub: 'carol', exp: now - 5 }), 'content-type': OCT }, 401],
      ['JWT with wrong secret -> 401', '/accounts/carol/ilp', { authorization: 'Bearer ' + jwt('other', { sub: 'carol', exp: now + 60 }), 'content-type': OCT }, 401],
      ['JWT HS512 header -> 401', '/accounts/carol/ilp', { authorization: 'Bearer ' + jwt(secret, { sub: 'carol', exp: now + 60 }, { alg: 'HS512', typ: 'JWT' }), 'content-type': OCT }, 401],
      ['JWT with wrong iss/aud accepted (not checked for HS256)', '/accounts/carol/ilp', { authorization: 'Bearer ' + jwt(secret, { sub: 'carol', exp: now + 60, iss: 'x', aud: 'y' }), 'content-type': OCT }, 200]
    ]
    for (const [name, urlPath, headers, status] of cases) {
      await check('java server: ' + name, async () => {
        const r = await rawPost(server.port, urlPath, headers, p)
        assert.strictEqual(r.status, status, r.body.toString())
        if (status === 401) assert.strictEqual(r.headers['content-type'], 'application/problem+json')
        if (status === 200) assert.strictEqual(r.headers['content-type'], OCT)
      })
    }
    await check('java server: garbage body -> 400 with an F00 Reject', async () => {
      const r = await rawPost(server.port, '/accounts/alice/ilp', { authorization: 'Bearer simple-tok', 'content-type': OCT }, Buffer.from('nope'))
      assert.strictEqual(r.status, 400)
      const rej = IlpPacket.deserializeIlpReject(r.body)
      assert.strictEqual(rej.code, 'F00'); assert.strictEqual(rej.message, 'Invalid ILP Prepare Packet')
    })
    await check('java server: trailing bytes accepted', async () => {
      const r = await rawPost(server.port, '/accounts/alice/ilp', { authorization: 'Bearer simple-tok', 'content-type': OCT }, Buffer.concat([makePrepare(), Buffer.from([9])]))
      assert.strictEqual(r.status, 200)
    })
    await check('java: wrong fulfillment -> F05 Received incorrect fulfillment', async () => {
      await server.cmd('handler', { mode: 'fulfill', fulfillment: '11'.repeat(32) })
      try {
        const r = await client.cmd('send', { prepare: makePrepare().toString('hex'), url: base + '/accounts/alice/ilp', token: 'simple-tok' })
        assert.strictEqual(r.replyInfo.code, 'F05'); assert.strictEqual(r.replyInfo.message, 'Received incorrect fulfillment')
      } finally { await server.cmd('handler', { mode: 'fulfill' }) }
    })
    await check('java: connection refused -> T00 Internal Error', async () => {
      const r = await client.cmd('send', { prepare: makePrepare().toString('hex'), url: 'http://127.0.0.1:1/accounts/a/ilp', token: 'x' })
      assert.strictEqual(r.replyInfo.code, 'T00'); assert.ok(r.replyInfo.message.startsWith('Internal Error: '))
    })
  } finally {
    await server.stop(); await client.stop()
  }
}

async function rustCases () {
  const server = await start('rust.js', { address: 'test.rust-b', accounts: { alice: { token: 'rs-tok' } } })
  const strictServer = await start('rust.js', { address: 'test.rust-s', strict: true, accounts: { alice: { token: 'rs-tok' } } })
  const client = await start('rust.js', { port: null, address: 'test.rust-a' })
  const url = `http://127.0.0.1:${server.port}/accounts/alice/ilp`
  try {
    await check('rust: client -> server fulfills', async () => {
      const r = await client.cmd('send', { prepare: makePrepare().toString('hex'), url, token: 'rs-tok' })
      assert.strictEqual(r.stage, 'peer'); assert.strictEqual(r.replyInfo.type, 'fulfill')
      const reqs = (await server.cmd('requests')).requests
      const h = reqs[reqs.length - 1].headers
      assert.strictEqual(h['content-type'], OCT); assert.strictEqual(h.authorization, 'Bearer rs-tok')
      assert.strictEqual(h.accept, '*/*')
    })
    await check('rust: wrong token -> 401 -> F02', async () => {
      const r = await client.cmd('send', { prepare: makePrepare().toString('hex'), url, token: 'bad' })
      assert.strictEqual(r.response.status, 401); assert.strictEqual(r.replyInfo.code, 'F02'); assert.strictEqual(r.replyInfo.message, '')
    })
    const p = makePrepare()
    const cases = [
      ['"Basic__rs-tok" (any 7 chars) accepted', '/accounts/alice/ilp', { authorization: 'Basic__rs-tok' }, p, 200],
      ['no Content-Type accepted', '/accounts/alice/ilp', { authorization: 'Bearer rs-tok' }, p, 200],
      ['ilp+octet-stream accepted', '/accounts/alice/ilp', { authorization: 'Bearer rs-tok', 'content-type': 'application/ilp+octet-stream' }, p, 200],
      ['raw token -> 401', '/accounts/alice/ilp', { authorization: 'rs-tok' }, p, 401],
      ['no Authorization -> 400', '/accounts/alice/ilp', {}, p, 400],
      ['unknown account -> 404', '/accounts/zed/ilp', { authorization: 'Bearer rs-tok' }, p, 404],
      ['path without /accounts -> 404', '/ilp', { authorization: 'Bearer rs-tok' }, p, 404],
      ['trailing slash -> 404', '/accounts/alice/ilp/', { authorization: 'Bearer rs-tok' }, p, 404],
      ['chunked body without Content-Length -> 411', '/accounts/alice/ilp', { authorization: 'Bearer rs-tok', 'transfer-encoding': 'chunked' }, p, 411],
      ['garbage -> 400', '/accounts/alice/ilp', { authorization: 'Bearer rs-tok' }, Buffer.from('nope'), 400],
      ['trailing bytes accepted (default build, no "strict")', '/accounts/alice/ilp', { authorization: 'Bearer rs-tok' }, Buffer.concat([p, Buffer.from([0])]), 200]
    ]
    for (const [name, urlPath, headers, body, status] of cases) {
      await check('rust server: ' + name, async () => {
        const r = await rawPost(server.port, urlPath, headers, body)
        assert.strictEqual(r.status, status, r.body.toString())
      })
    }
    await check('rust server: one-character username -> 404 (\\w{2,32})', async () => {
      const r = await rawPost(server.port, '/accounts/a/ilp', { authorization: 'Bearer rs-tok' }, makePrepare())
      assert.strictEqual(r.status, 404)
    })
    await check('rust server (strict): outer trailing bytes -> 400 Invalid Packet', async () => {
      const r = await rawPost(strictServer.port, '/accounts/alice/ilp', { authorization: 'Bearer rs-tok' }, Buffer.concat([makePrepare(), Buffer.from([0])]))
      assert.strictEqual(r.status, 400)
      assert.strictEqual(JSON.parse(r.body.toString()).title, 'Invalid Packet')
    })
    await check('rust server (strict): inner trailing bytes -> 400', async () => {
      const good = makePrepare()
      // grow the envelope length by one and append a byte inside it
      assert.ok(good[1] < 0x7f)
      const inner = Buffer.concat([good, Buffer.from([0])]); inner[1] = good[1] + 1
      const r = await rawPost(strictServer.port, '/accounts/alice/ilp', { authorization: 'Bearer rs-tok' }, inner)
      assert.strictEqual(r.status, 400)
      const r2 = await rawPost(server.port, '/accounts/alice/ilp', { authorization: 'Bearer rs-tok' }, inner)
      assert.strictEqual(r2.status, 200)
    })
    await check('rust: 5xx -> T01; wrong fulfillment -> F09; garbage -> T01; timeout -> R00', async () => {
      const java = await start('java.js', { accounts: {} })
      try {
        // a Java server answering 401 for everything: 4xx -> F02
        let r = await client.cmd('send', { prepare: makePrepare().toString('hex'), url: `http://127.0.0.1:${java.port}/accounts/alice/ilp`, token: 'x' })
        assert.strictEqual(r.replyInfo.code, 'F02')
      } finally { await java.stop() }
      await server.cmd('handler', { mode: 'fulfill', fulfillment: '22'.repeat(32) })
      let r = await client.cmd('send', { prepare: makePrepare().toString('hex'), url, token: 'rs-tok' })
      assert.strictEqual(r.replyInfo.code, 'F09')
      await server.cmd('handler', { mode: 'garbage' })
      r = await client.cmd('send', { prepare: makePrepare().toString('hex'), url, token: 'rs-tok' })
      assert.strictEqual(r.replyInfo.code, 'T01')
      await server.cmd('handler', { mode: 'hang' })
      r = await client.cmd('send', { prepare: makePrepare({ expiresInMs: 300 }).toString('hex'), url, token: 'rs-tok' })
      assert.strictEqual(r.replyInfo.code, 'R00')
      await server.cmd('handler', { mode: 'fulfill', trailing: '00' })
      r = await client.cmd('send', { prepare: makePrepare().toString('hex'), url, token: 'rs-tok' })
      assert.strictEqual(r.replyInfo.type, 'fulfill')
      await server.cmd('handler', { mode: 'fulfill' })
    })
    await check('rust (strict client): reply with trailing bytes -> T01', async () => {
      const sc = await start('rust.js', { port: null, strict: true, address: 'test.rust-sc' })
      try {
        await server.cmd('handler', { mode: 'fulfill', trailing: '00' })
        const r = await sc.cmd('send', { prepare: makePrepare().toString('hex'), url, token: 'rs-tok' })
        assert.strictEqual(r.replyInfo.code, 'T01'); assert.strictEqual(r.stage, 'reply-unparsable')
      } finally { await sc.stop(); await server.cmd('handler', { mode: 'fulfill' }) }
    })
  } finally {
    await server.stop(); await strictServer.stop(); await client.stop()
  }
}

async function crossCases () {
  // Each client against each other server, the happy path.
  const rafiki = await start('rafiki.js', { peers: { xy: { incomingTokens: ['t'] } } })
  const java = await start('java.js', { accounts: { xy: { token: 't' } } })
  const rust = await start('rust.js', { accounts: { xy: { token: 't' } } })
  try {
    const urls = {
      rafiki: `http://127.0.0.1:${rafiki.port}/`,
      java: `http://127.0.0.1:${java.port}/accounts/xy/ilp`,
      rust: `http://127.0.0.1:${rust.port}/accounts/xy/ilp`
    }
    for (const [name, peer] of [['rafiki', rafiki], ['java', java], ['rust', rust]]) {
      for (const target of Object.keys(urls)) {
        await check(`cross: ${name} client -> ${target} server`, async () => {
          const r = await peer.cmd('send', { prepare: makePrepare().toString('hex'), url: urls[target], endpoint: urls[target], token: 't', authToken: 't' })
          assert.strictEqual(r.replyInfo.type, 'fulfill', JSON.stringify(r))
        })
      }
    }
  } finally {
    await rafiki.stop(); await java.stop(); await rust.stop()
  }
}

// How each client turns an HTTP answer into an ILP reply: a stub server answers
// every request with a fixed status and body.
async function statusTable () {
  let answer = { status: 200, type: 'text/plain', body: Buffer.alloc(0) }
  const stub = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => { res.writeHead(answer.status, { 'content-type': answer.type }); res.end(answer.body) })
  })
  await new Promise((resolve) => stub.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${stub.address().port}/accounts/xy/ilp`
  const clients = {
    rafiki: await start('rafiki.js', { port: null, address: 'test.r' }),
    java: await start('java.js', { port: null, address: 'test.j' }),
    rust: await start('rust.js', { port: null, address: 'test.s' })
  }
  const problem = Buffer.from(JSON.stringify({ title: 'Bad Thing', status: 0 }))
  // [status, body, content-type, {rafiki, java, rust: [code, message or null]}]
  const table = [
    [401, Buffer.from('x'), 'text/plain', { rafiki: ['T00', 'unexpected internal error'], java: ['F00', null], rust: ['F02', ''] }],
    [403, Buffer.from('x'), 'text/plain', { rafiki: ['T00', null], java: ['F00', null], rust: ['F02', ''] }],
    [400, problem, 'application/problem+json', { rafiki: ['T00', null], java: ['F00', 'Bad Thing'], rust: ['F02', ''] }],
    [415, Buffer.from('plain words'), 'text/plain', { rafiki: ['T00', null], java: ['F00', 'plain words'], rust: ['F02', ''] }],
    [500, Buffer.from('boom'), 'text/plain', { rafiki: ['T00', null], java: ['T00', 'boom'], rust: ['T01', ''] }],
    [503, problem, 'application/problem+json', { rafiki: ['T00', null], java: ['T00', 'Bad Thing'], rust: ['T01', ''] }],
    [200, Buffer.from('garbage'), 'application/octet-stream', { rafiki: ['T00', null], java: ['T00', null], rust: ['T01', ''] }]
  ]
  try {
    for (const [status, body, type, expect] of table) {
      answer = { status, type, body }
      for (const name of Object.keys(clients)) {
        await check(`status table: ${status} ${type} -> ${name} ${expect[name][0]}`, async () => {
          const r = await clients[name].cmd('send', { prepare: makePrepare().toString('hex'), url, endpoint: url, token: 't', authToken: 't' })
          assert.strictEqual(r.replyInfo.code, expect[name][0], JSON.stringify(r.replyInfo))
          if (expect[name][1] !== null) assert.strictEqual(r.replyInfo.message, expect[name][1])
        })
      }
    }
  } finally {
    stub.close()
    for (const c of Object.values(clients)) await c.stop()
  }
}

;(async () => {
  await statusTable()
  await rafikiCases()
  await javaCases()
  await rustCases()
  await crossCases()
  const failed = results.filter(([, e]) => e)
  console.log(`\n${results.length - failed.length}/${results.length} passed`)
  process.exit(failed.length ? 1 : 0)
})().catch((err) => { console.error(err); process.exit(1) })
