'use strict'
// A bare node `http` server: the ceiling of any node HTTP/1.1 server, for run.py.
//
//   node bench/node_bare.js '{"port": 0}'
//
// It reads the POST body and answers 200 with a fixed ILP Fulfill
// (application/octet-stream); no auth, no parsing, no koa.  Listens on
// 127.0.0.1, prints {"event":"ready","port":N} and exits when stdin closes
// (or on SIGTERM/SIGINT).

const http = require('http')

// type 13, length 33, the 32-byte fulfillment (all 7s, as js_server.js), empty data
const FULFILL = Buffer.concat([Buffer.from([13, 33]), Buffer.alloc(32, 7), Buffer.from([0])])

const opts = JSON.parse(process.argv[2] || '{}')
const server = http.createServer((req, res) => {
  req.on('data', () => {})
  req.on('end', () => {
    if (req.method !== 'POST') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 })
      res.end('OK')
      return
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': FULFILL.length })
    res.end(FULFILL)
  })
})
server.listen(opts.port || 0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ event: 'ready', port: server.address().port }) + '\n')
})
const stop = () => process.exit(0)
process.stdin.on('end', stop)
process.stdin.on('close', stop)
process.stdin.resume()
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
