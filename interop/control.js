'use strict'
// Shared machinery of the interop scripts (peer.js, connector.js, stream.js):
// a line-based JSON control protocol on stdin/stdout, loopback-only listening
// for the Koa servers that ilp-plugin-http creates, and request capture.
//
// stdout carries ONLY protocol lines (one JSON object each).  Anything else a
// library prints to stdout (ilp-connector's logger pipes to process.stdout) is
// diverted to stderr, which is free-form diagnostics.

const fs = require('fs')
const http = require('http')
const readline = require('readline')

const realStdoutWrite = process.stdout.write.bind(process.stdout)
process.stdout.write = function (chunk, encoding, cb) {
  return process.stderr.write(chunk, encoding, cb)
}

function emit (obj) {
  realStdoutWrite(JSON.stringify(obj) + '\n')
}

function log (...args) {
  process.stderr.write('[' + new Date().toISOString() + '] ' + args.join(' ') + '\n')
}

function describe (err) {
  if (err && typeof err === 'object' && err.message !== undefined) return String(err.message)
  return String(err)
}

process.on('uncaughtException', (err) => {
  log('uncaughtException:', (err && err.stack) || err)
  try { emit({ event: 'fatal', error: describe(err) }) } catch (e) {}
  process.exit(70)
})
process.on('unhandledRejection', (err) => {
  // Logged, not fatal: the JS libraries leave some promises unobserved.
  log('unhandledRejection:', (err && err.stack) || err)
})

// The config is argv[N]: inline JSON (starts with "{") or a path to a JSON file.
function loadConfig (arg) {
  if (arg === undefined || arg === '') return {}
  const text = arg.trim().startsWith('{') ? arg : fs.readFileSync(arg, 'utf8')
  return JSON.parse(text)
}

// --- loopback listening + request capture ---------------------------------
// ilp-plugin-http calls `new Koa().listen(port)`, which binds every interface.
// The test suite must stay on 127.0.0.1, so Koa's listen binds the loopback
// address instead.  Nothing else about the plugin changes.  Every request that
// reaches such a server is recorded (method, url, headers) before Koa sees it.
const LOOPBACK = '127.0.0.1'
const MAX_RECORDED = 10000
const requests = []
const servers = []

function recordRequest (req) {
  if (requests.length >= MAX_RECORDED) requests.shift()
  requests.push({
    method: req.method,
    url: req.url,
    httpVersion: req.httpVersion,
    headers: req.headers,
    localPort: req.socket && req.socket.localPort,
    remotePort: req.socket && req.socket.remotePort
  })
}

function patchKoa () {
  const Koa = require('koa')
  if (Koa.prototype.__ilphttpPatched) return
  Koa.prototype.listen = function (port) {
    const callback = this.callback()
    const server = http.createServer((req, res) => {
      recordRequest(req)
      callback(req, res)
    })
    server.listen(port === undefined || port === null ? 0 : port, LOOPBACK)
    servers.push(server)
    return server
  }
  Koa.prototype.__ilphttpPatched = true
}

function whenListening (server, timeoutMs) {
  return new Promise((resolve, reject) => {
    if (server.listening) return resolve(server.address().port)
    const timer = setTimeout(() => reject(new Error('server did not start listening')), timeoutMs || 10000)
    server.once('listening', () => { clearTimeout(timer); resolve(server.address().port) })
    server.once('error', (err) => { clearTimeout(timer); reject(err) })
  })
}

// --- the command loop -------------------------------------------------------
// Each stdin line is {"id": <any>, "cmd": "<name>", ...}.  The reply is
// {"id": <same>, ...result} or {"id": <same>, "error": "<message>"}.  Commands
// run concurrently; replies may come out of order (match them by id).
// stdin closing is treated as "stop" so no process outlives its test.
function serve (handlers, onStop) {
  let stopping = false
  async function stop (code) {
    if (stopping) return
    stopping = true
    const force = setTimeout(() => process.exit(code), 3000)
    force.unref()
    try {
      if (onStop) await onStop()
    } catch (err) {
      log('error while stopping:', (err && err.stack) || err)
    }
    process.exit(code)
  }
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
  rl.on('line', (line) => {
    if (!line.trim()) return
    let msg
    try {
      msg = JSON.parse(line)
    } catch (err) {
      emit({ id: null, error: 'invalid JSON command: ' + describe(err) })
      return
    }
    const id = msg.id === undefined ? null : msg.id
    if (msg.cmd === 'stop') {
      realStdoutWrite(JSON.stringify({ id, ok: true }) + '\n', () => stop(0))
      return
    }
    const handler = handlers[msg.cmd]
    if (!handler) {
      emit({ id, error: 'unknown command: ' + msg.cmd })
      return
    }
    Promise.resolve()
      .then(() => handler(msg))
      .then((result) => emit(Object.assign({ id }, result || { ok: true })),
        (err) => {
          log('command', msg.cmd, 'failed:', (err && err.stack) || err)
          emit({ id, error: describe(err) })
        })
  })
  rl.on('close', () => stop(0))
  process.on('SIGTERM', () => stop(0))
  process.on('SIGINT', () => stop(0))
}

function withTimeout (promise, ms, what) {
  if (!ms) return promise
  let timer
  return Promise.race([
    promise,
    new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error('timeout: ' + what + ' took over ' + ms + ' ms')), ms)
    })
  ]).finally(() => clearTimeout(timer))
}

module.exports = {
  emit,
  log,
  describe,
  loadConfig,
  patchKoa,
  whenListening,
  requests,
  servers,
  serve,
  withTimeout,
  LOOPBACK
}
