'use strict'
// A small cleartext HTTP/2 (h2c) server on node's built-in `http2`, for the
// ilphttp HTTP/2 client tests. Listens on 127.0.0.1, prints {"port": N} on
// one line, exits on SIGTERM or when stdin closes.
//
// Usage: node h2server.js '{"settings": {"maxConcurrentStreams": 2}}'
//
// Every response carries: x-session (session number, from 1), x-stream
// (stream id), x-path (:path, query included), x-method, x-inflight (open
// request streams on the session when this one arrived, itself included),
// x-max-inflight (highest x-inflight seen on the session so far).
//
// Paths (query parameters):
//   /echo[?delay=ms]        200, body = request body (or "OK" if empty)
//   /reset?code=N           reset the stream with code N, no response
//   /refuse-once?key=K      REFUSED_STREAM the first time K is seen, then echo
//   /reset-after-headers    send headers and some data, then destroy the stream
//                           with an error (RST_STREAM INTERNAL_ERROR)
//   /goaway?code=N[&delay=ms]  send GOAWAY(code, last = this stream), then
//                           answer this stream after delay (if code == 0)
//   /big?size=N             200 with an N-byte body
//   /destroy-session        destroy the TCP connection (no GOAWAY)
//   /close-session          answer, then close the session gracefully (GOAWAY)
//   /stats                  JSON: sessions opened, open now, resets received

const http2 = require('http2')

const opts = JSON.parse(process.argv[2] || '{}')
const server = http2.createServer({ settings: opts.settings || {} })

let sessionCount = 0
let openSessions = 0
const resets = [] // rst codes of streams reset by the client
const refused = new Set()
// Raw TCP sockets by client port: node forbids destroying session.socket.
const rawSockets = new Map()
server.on('connection', (socket) => {
  const port = socket.remotePort
  rawSockets.set(port, socket)
  socket.on('close', () => rawSockets.delete(port))
})

server.on('session', (session) => {
  sessionCount += 1
  openSessions += 1
  session.ilpId = sessionCount
  session.inflight = 0
  session.maxInflight = 0
  session.goneAway = false
  session.on('close', () => { openSessions -= 1 })
  session.on('error', () => {})
})

function query (path) {
  const i = path.indexOf('?')
  return new URLSearchParams(i >= 0 ? path.slice(i + 1) : '')
}

server.on('stream', (stream, headers) => {
  const session = stream.session
  const path = headers[':path']
  const name = path.split('?')[0]
  const q = query(path)
  if (name === '/stats') {
    stream.respond({ ':status': 200, 'content-type': 'application/json' })
    stream.end(JSON.stringify({ sessions: sessionCount, open: openSessions, resets }))
    return
  }
  session.inflight += 1
  session.maxInflight = Math.max(session.maxInflight, session.inflight)
  const inflightNow = session.inflight
  let counted = true
  const done = () => {
    if (counted) { counted = false; session.inflight -= 1 }
  }
  stream.on('close', () => {
    if (stream.rstCode && stream.rstCode !== 0 && !stream.sentHeaders) {
      resets.push(stream.rstCode)
    }
    done()
  })
  stream.on('error', () => {})
  const chunks = []
  stream.on('data', (c) => chunks.push(c))
  stream.on('end', () => {
    const body = Buffer.concat(chunks)
    const replyHeaders = () => ({
      ':status': 200,
      'x-session': String(session.ilpId),
      'x-stream': String(stream.id),
      'x-path': path,
      'x-method': headers[':method'],
      'x-inflight': String(inflightNow),
      'x-max-inflight': String(session.maxInflight),
      'x-body-length': String(body.length)
    })
    const reply = (payload) => {
      if (stream.destroyed || stream.closed) return
      stream.respond(replyHeaders())
      stream.end(payload)
    }
    if (name === '/reset') {
      stream.close(Number(q.get('code') || 2))
      return
    }
    if (name === '/refuse-once') {
      const key = q.get('key')
      if (!refused.has(key)) {
        refused.add(key)
        stream.close(http2.constants.NGHTTP2_REFUSED_STREAM)
        return
      }
      reply(body.length ? body : 'OK')
      return
    }
    if (name === '/reset-after-headers') {
      stream.respond(replyHeaders())
      stream.write(Buffer.alloc(100, 'x'), () => {
        setTimeout(() => stream.destroy(new Error('boom')), 20)
      })
      return
    }
    if (name === '/goaway') {
      const code = Number(q.get('code') || 0)
      session.goaway(code, stream.id)
      const delay = Number(q.get('delay') || 50)
      setTimeout(() => reply('goaway'), delay)
      return
    }
    if (name === '/destroy-session') {
      const raw = rawSockets.get(session.socket.remotePort)
      if (raw) raw.destroy()
      return
    }
    if (name === '/close-session') {
      reply('closing')
      session.close()
      return
    }
    if (name === '/big') {
      reply(Buffer.alloc(Number(q.get('size') || 0), 'b'))
      return
    }
    const delay = Number(q.get('delay') || 0)
    if (delay > 0) {
      setTimeout(() => reply(body.length ? body : 'OK'), delay)
    } else {
      reply(body.length ? body : 'OK')
    }
  })
})

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n')
})

const stop = () => {
  server.close()
  process.exit(0)
}
process.on('SIGTERM', stop)
process.stdin.on('end', stop)
process.stdin.on('close', stop)
process.stdin.resume()
