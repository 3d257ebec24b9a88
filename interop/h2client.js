'use strict'
// A small HTTP/2 client on node's built-in `http2` (h2c prior knowledge for
// http:// URLs), for the ilphttp h2c server tests. Sends the given requests
// concurrently on ONE session and prints a JSON array of results.
//
// Usage: node h2client.js '{"url": "http://127.0.0.1:8000",
//   "requests": [{"method": "POST", "path": "/x?y=1",
//                 "headers": {"content-type": "application/octet-stream"},
//                 "body": "<base64>"}]}'
// Result items: {"status": 200, "headers": {...}, "body": "<base64>"} or {"error": "..."}

const http2 = require('http2')

const opts = JSON.parse(process.argv[2])
const timer = setTimeout(() => {
  process.stderr.write('h2client: timed out\n')
  process.exit(2)
}, opts.timeoutMs || 10000)

const session = http2.connect(opts.url)
session.on('error', (err) => {
  process.stderr.write('h2client session error: ' + err.message + '\n')
  process.exit(1)
})

function one (req) {
  return new Promise((resolve) => {
    const headers = Object.assign({
      ':method': req.method || 'GET',
      ':path': req.path || '/'
    }, req.headers || {})
    const stream = session.request(headers)
    const chunks = []
    let responseHeaders = {}
    stream.on('response', (h) => { responseHeaders = h })
    stream.on('data', (c) => chunks.push(c))
    stream.on('end', () => resolve({
      status: responseHeaders[':status'],
      headers: responseHeaders,
      body: Buffer.concat(chunks).toString('base64')
    }))
    stream.on('error', (err) => resolve({ error: err.message }))
    if (req.body) stream.end(Buffer.from(req.body, 'base64'))
    else stream.end()
  })
}

Promise.all(opts.requests.map(one)).then((results) => {
  process.stdout.write(JSON.stringify(results) + '\n')
  clearTimeout(timer)
  session.close(() => process.exit(0))
})
