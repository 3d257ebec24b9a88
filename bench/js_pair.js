'use strict'
// The JS ilp-plugin-http@1.6.1 as a sender, in a closed loop, for run.py.
//
//   node bench/js_pair.js '<json options>'
//
// Options: url (the receiver; without it, a receiver from js_server.js runs in
// this same process: the one-process pair), token, jwtSecret (the sender signs
// HS256 JWTs instead of sending the static token), size (bytes of Prepare
// data), concurrency, duration and warmup (seconds), expiresIn (seconds),
// http2 (send over h2c; needs an HTTP/2-capable receiver such as server_ilphttp.py),
// receiverPid (the receiver's process: its CPU time over the window is read
// from /proc/<pid>/stat and reported beside this process's own).
//
// `concurrency` workers each send one Prepare, wait for the reply and send the
// next.  The measuring window opens when the warm-up is over and every worker
// has had a reply (at most 20 s later); packets answered in the window count,
// and latency is per packet, send to reply.  Prints one line:
// {"event":"result","packets":..,"errors":..,"seconds":..,"pps":..,"p50_ms":..,"p99_ms":..,
//  "cpu_s":{"sender":..,"receiver":..}}
// and exits.  The process bounds itself: it exits after warmup + duration + 35 s.

const crypto = require('crypto')
const fs = require('fs')
const { startReceiver, req, FULFILLMENT, DEFAULT_TOKEN } = require('./js_server')

const TYPE_FULFILL = 13
const MAX_EXTRA_WARMUP_MS = 20000

function percentile (sorted, p) {
  if (sorted.length === 0) return null
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))
  return sorted[i]
}

// USER_HZ: 100 on every Linux that node runs on (/proc/<pid>/stat counts in it)
const CLK_TCK = 100

// user + system CPU seconds of another process (all its threads), or null
function procCpuSeconds (pid) {
  if (!pid) return null
  try {
    const text = fs.readFileSync('/proc/' + pid + '/stat', 'latin1')
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK
  } catch (err) {
    return null
  }
}

// this process's CPU seconds (all threads: libuv's pool too)
function selfCpuSeconds () {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

async function main () {
  const o = Object.assign({
    token: DEFAULT_TOKEN,
    size: 100,
    concurrency: 1,
    duration: 3,
    warmup: 1,
    expiresIn: 600
  }, JSON.parse(process.argv[2] || '{}'))
  const hardLimit = setTimeout(() => {
    process.stderr.write('js_pair: time limit reached\n')
    process.exit(3)
  }, (o.warmup + o.duration + MAX_EXTRA_WARMUP_MS / 1000 + 15) * 1000)
  hardLimit.unref()

  const IlpPacket = req('ilp-packet')
  const PluginHttp = req('ilp-plugin-http')

  let receiver = null
  let url = o.url
  if (!url) {
    receiver = await startReceiver({ token: o.token, jwtSecret: o.jwtSecret })
    url = 'http://127.0.0.1:' + receiver.port + '/'
  }
  const outgoing = { url, name: 'benchsender' }
  if (o.jwtSecret) outgoing.jwtSecret = o.jwtSecret
  else outgoing.staticToken = o.token
  if (o.http2) outgoing.http2 = true // h2c with prior knowledge (the receiver must speak it)
  // The JS plugin insists on incoming auth and always listens (loopback here).
  const sender = new PluginHttp({ incoming: { staticToken: 'unused-incoming' }, outgoing })
  await sender.connect()

  const prepare = IlpPacket.serializeIlpPrepare({
    amount: '1',
    executionCondition: crypto.createHash('sha256').update(FULFILLMENT).digest(),
    expiresAt: new Date(Date.now() + o.expiresIn * 1000),
    destination: 'test.bench.receiver',
    data: Buffer.alloc(o.size, 0x61)
  })

  // One packet first: the JS plugin's JWT signing races on concurrent first
  // calls (all but one send "Bearer undefined"); it also opens a connection.
  const first = await sender.sendData(prepare)
  if (first[0] !== TYPE_FULFILL) throw new Error('first reply is not a Fulfill: type ' + first[0])

  const now = () => Number(process.hrtime.bigint()) / 1e6 // ms
  const began = now()
  const warmEnd = began + o.warmup * 1000
  // The window opens once the warm-up is over AND every worker has had a reply
  // (opening C connections at once can take seconds), or MAX_EXTRA_WARMUP_MS later.
  let tStart = null
  let tEnd = Infinity
  let cpu0 = null
  let cpu1 = null
  const cpuNow = () => ({ sender: selfCpuSeconds(), receiver: procCpuSeconds(o.receiverPid) })
  let warmed = 0
  const latencies = []
  let errors = 0
  let lastError = null

  function maybeOpenWindow (t) {
    if (tStart !== null || t < warmEnd) return
    if (warmed === o.concurrency || t >= warmEnd + MAX_EXTRA_WARMUP_MS) {
      tStart = t
      tEnd = t + o.duration * 1000
      cpu0 = cpuNow()
      setTimeout(() => { cpu1 = cpuNow() }, o.duration * 1000)
    }
  }

  async function worker () {
    let replied = false
    for (;;) {
      const t0 = now()
      if (t0 >= tEnd) return
      let ok = false
      try {
        const reply = await sender.sendData(prepare)
        ok = reply[0] === TYPE_FULFILL
        if (!ok) lastError = 'reply type ' + reply[0]
      } catch (err) {
        lastError = String(err && err.message ? err.message : err)
      }
      const t1 = now()
      if (!replied) {
        replied = true
        warmed++
      }
      maybeOpenWindow(t1)
      if (tStart !== null && t1 >= tStart && t1 <= tEnd) {
        if (ok) latencies.push(t1 - t0)
        else errors++
      }
    }
  }
  const workers = []
  for (let i = 0; i < o.concurrency; i++) workers.push(worker())
  await Promise.all(workers)

  if (cpu0 !== null && cpu1 === null) cpu1 = cpuNow()
  const cpuDelta = (k) => (cpu0 && cpu1 && cpu0[k] !== null && cpu1[k] !== null) ? cpu1[k] - cpu0[k] : null
  latencies.sort((a, b) => a - b)
  const sum = latencies.reduce((a, b) => a + b, 0)
  const result = {
    event: 'result',
    impl: 'js',
    packets: latencies.length,
    errors,
    seconds: o.duration,
    pps: latencies.length / o.duration,
    p50_ms: percentile(latencies, 0.5),
    p99_ms: percentile(latencies, 0.99),
    mean_ms: latencies.length ? sum / latencies.length : null,
    max_ms: latencies.length ? latencies[latencies.length - 1] : null,
    cpu_s: { sender: cpuDelta('sender'), receiver: cpuDelta('receiver') },
    warmup_s: tStart === null ? null : (tStart - began) / 1000,
    last_error: lastError
  }
  process.stdout.write(JSON.stringify(result) + '\n')
  await sender.disconnect()
  if (receiver) await receiver.plugin.disconnect()
  process.exit(0)
}

main().catch((err) => {
  process.stderr.write('js_pair: ' + (err && err.stack ? err.stack : err) + '\n')
  process.exit(1)
})
