'use strict'
// Differential-test driver: the real npm ilp-packet and ilp-protocol-ildcp on one
// side, ilphttp's Python codec on the other (tests/test_packet_differential.py).
//
//   node packets.js generate SEED COUNT
//     COUNT packets made by the npm packages from a seeded generator, one JSON line
//     each: {"kind", "hex", "fields"}. Kinds: prepare, fulfill, reject (ilp-packet),
//     ildcp_response, ildcp_request (ilp-protocol-ildcp). The first lines are fixed
//     edge cases (largest packets, empty fields, extreme amounts and dates).
//
//   node packets.js decode
//     Reads "KIND HEX" lines on stdin (KIND: packet, ildcp_response, ildcp_request)
//     and prints one JSON line per input line, in order:
//     {"ok": true, "kind", "fields", "hex"} where hex is the npm package's own
//     re-serialization, or {"ok": false, "error"}.
//
// Fields use one shape in both modes: amounts as decimal strings, binary as hex,
// expiresAt as milliseconds since the epoch (and as ISO text for people).

const IlpPacket = require('ilp-packet')
const ILDCP = require('ilp-protocol-ildcp')

const MAX_DATA = 32767
const MAX_ADDRESS = 1023
const SCHEMES = ['g', 'private', 'example', 'peer', 'self', 'test', 'test1', 'test2', 'test3', 'local']
const ADDRESS_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_~-'
const CODES = Object.values(IlpPacket.IlpError) // F00 .. R99
const NEAR = Date.UTC(2026, 0, 1) // a fixed "now": the same lines for a seed, any day
const MIN_DATE = Date.UTC(1000, 0, 1)
const MAX_DATE = Date.UTC(9999, 11, 31, 23, 59, 59, 999)
// Unicode ranges for reject messages and asset codes (no surrogates: they are
// not characters and cannot be UTF-8 encoded).
const TEXT_RANGES = [
  [0x20, 0x7e], [0x20, 0x7e], [0x00, 0x1f], [0xa0, 0x24f], [0x300, 0x36f],
  [0x370, 0x3ff], [0x400, 0x4ff], [0x5d0, 0x5ea], [0x600, 0x6ff], [0x900, 0x97f],
  [0x3040, 0x30ff], [0x4e00, 0x9fff], [0xac00, 0xd7a3], [0xe000, 0xf8ff],
  [0xfe00, 0xfe0f], [0xfff0, 0xfffd], [0x1f300, 0x1faff], [0x10000, 0x10ffff]
]

// A small seeded generator (xorshift32 steps, mixed): reproducible lines for a seed.
function makeRandom (seed) {
  let state = (seed >>> 0) ^ 0x6d2b79f5
  if (state === 0) state = 0x9e3779b9
  const next32 = () => {
    state ^= state << 13
    state >>>= 0
    state ^= state >>> 17
    state ^= state << 5
    state >>>= 0
    return state
  }
  const below = (n) => {
    // uniform in [0, n) for n up to 2^48
    if (n <= 0x100000000) return next32() % n
    return (next32() * 0x10000 + (next32() & 0xffff)) % n
  }
  return {
    next32,
    below,
    between: (lo, hi) => lo + below(hi - lo + 1),
    chance: (p) => next32() / 0x100000000 < p,
    pick: (items) => items[below(items.length)],
    bytes: (n) => {
      const buf = Buffer.alloc(n)
      for (let i = 0; i < n; i += 4) {
        const word = next32()
        for (let j = 0; j < 4 && i + j < n; j++) buf[i + j] = (word >>> (8 * j)) & 0xff
      }
      return buf
    }
  }
}

function makeAddress (rnd, total) {
  const scheme = rnd.pick(SCHEMES)
  const length = total === undefined ? scheme.length + 1 + rnd.between(1, 40) : total
  const chars = []
  const bodyLength = length - scheme.length - 1
  for (let i = 0; i < bodyLength; i++) {
    const canDot = i > 0 && i < bodyLength - 1 && chars[i - 1] !== '.'
    chars.push(canDot && rnd.chance(0.12) ? '.' : rnd.pick(ADDRESS_CHARS))
  }
  const address = scheme + '.' + chars.join('')
  if (address.length !== length || !IlpPacket.isValidIlpAddress(address)) {
    throw new Error('generator made a bad address: ' + address)
  }
  return address
}

function randomAddress (rnd) {
  const r = rnd.below(10)
  if (r < 6) return makeAddress(rnd)
  if (r < 9) return makeAddress(rnd, rnd.pick([126, 127, 128, 129, 255, 256, 300]))
  return makeAddress(rnd, rnd.pick([1000, 1022, MAX_ADDRESS]))
}

function randomData (rnd) {
  const r = rnd.below(20)
  if (r < 5) return Buffer.alloc(0)
  if (r < 12) return rnd.bytes(rnd.between(1, 127))
  if (r < 16) return rnd.bytes(rnd.pick([127, 128, 255, 256, 257, 65535 >> 2]))
  if (r < 19) return rnd.bytes(rnd.between(1, MAX_DATA))
  return rnd.bytes(MAX_DATA)
}

function randomAmount (rnd) {
  const r = rnd.below(8)
  if (r === 0) return '0'
  if (r === 1) return '18446744073709551615'
  if (r === 2) return rnd.pick(['1', '9007199254740993', '9223372036854775808', '4294967296'])
  if (r < 5) return String(rnd.below(1000000))
  return ((BigInt(rnd.next32()) << 32n) | BigInt(rnd.next32())).toString()
}

function randomDate (rnd) {
  const r = rnd.below(10)
  if (r === 0) return new Date(rnd.pick([0, MIN_DATE, MAX_DATE, Date.UTC(2000, 1, 29, 12)]))
  if (r < 4) return new Date(NEAR + rnd.below(86400000 * 30))
  return new Date(MIN_DATE + rnd.below(MAX_DATE - MIN_DATE + 1))
}

function randomText (rnd, maxChars) {
  const n = rnd.chance(0.2) ? 0 : rnd.between(1, maxChars)
  const points = []
  for (let i = 0; i < n; i++) {
    const [lo, hi] = rnd.pick(TEXT_RANGES)
    points.push(rnd.between(lo, hi))
  }
  return String.fromCodePoint(...points)
}

function randomMessage (rnd) {
  const r = rnd.below(10)
  if (r < 6) return randomText(rnd, 40)
  if (r < 9) return randomText(rnd, 400)
  return randomText(rnd, 5000)
}

function randomAssetCode (rnd) {
  let code = randomText(rnd, rnd.chance(0.8) ? 6 : 120)
  while (Buffer.byteLength(code, 'utf8') > 255) code = code.slice(0, -1)
  // a cut may leave half a surrogate pair at the end
  while (code.length && /[\ud800-\udbff]$/.test(code)) code = code.slice(0, -1)
  return code
}

function prepareFields (p) {
  return {
    amount: String(p.amount),
    expiresAt: p.expiresAt.getTime(),
    expiresAtIso: p.expiresAt.toISOString(),
    executionCondition: p.executionCondition.toString('hex'),
    destination: p.destination,
    data: p.data.toString('hex')
  }
}

function fulfillFields (f) {
  return { fulfillment: f.fulfillment.toString('hex'), data: f.data.toString('hex') }
}

function rejectFields (r) {
  return { code: r.code, triggeredBy: r.triggeredBy, message: r.message, data: r.data.toString('hex') }
}

function makePrepare (rnd, over) {
  const p = Object.assign({
    amount: randomAmount(rnd),
    expiresAt: randomDate(rnd),
    executionCondition: rnd.bytes(32),
    destination: randomAddress(rnd),
    data: randomData(rnd)
  }, over)
  return { kind: 'prepare', hex: IlpPacket.serializeIlpPrepare(p).toString('hex'), fields: prepareFields(p) }
}

function makeFulfill (rnd, over) {
  const f = Object.assign({ fulfillment: rnd.bytes(32), data: randomData(rnd) }, over)
  return { kind: 'fulfill', hex: IlpPacket.serializeIlpFulfill(f).toString('hex'), fields: fulfillFields(f) }
}

function makeReject (rnd, over) {
  const r = Object.assign({
    code: rnd.chance(0.8) ? rnd.pick(CODES) : String.fromCharCode(...[0, 0, 0].map(() => rnd.between(0x21, 0x7e))),
    triggeredBy: rnd.chance(0.2) ? '' : randomAddress(rnd),
    message: randomMessage(rnd),
    data: randomData(rnd)
  }, over)
  return { kind: 'reject', hex: IlpPacket.serializeIlpReject(r).toString('hex'), fields: rejectFields(r) }
}

function makeIldcpResponse (rnd, over) {
  const info = Object.assign({
    clientAddress: randomAddress(rnd),
    assetScale: rnd.chance(0.1) ? rnd.pick([0, 255]) : rnd.below(256),
    assetCode: randomAssetCode(rnd)
  }, over)
  const hex = ILDCP.serializeIldcpResponse(info).toString('hex')
  return { kind: 'ildcp_response', hex, fields: info }
}

function makeIldcpRequest (rnd) {
  const expiresAt = randomDate(rnd)
  const data = rnd.chance(0.7) ? Buffer.alloc(0) : randomData(rnd)
  const hex = ILDCP.serializeIldcpRequest({ expiresAt, data }).toString('hex')
  return {
    kind: 'ildcp_request',
    hex,
    fields: { expiresAt: expiresAt.getTime(), expiresAtIso: expiresAt.toISOString(), data: data.toString('hex') }
  }
}

function generate (seed, count) {
  const rnd = makeRandom(seed)
  const edges = [
    // the largest legal Prepare: 33857 bytes
    () => makePrepare(rnd, {
      amount: '18446744073709551615',
      expiresAt: new Date(MAX_DATE),
      destination: makeAddress(rnd, MAX_ADDRESS),
      data: rnd.bytes(MAX_DATA)
    }),
    () => makePrepare(rnd, { amount: '0', expiresAt: new Date(0), destination: 'g.a', data: Buffer.alloc(0) }),
    () => makeFulfill(rnd, { data: rnd.bytes(MAX_DATA) }),
    () => makeFulfill(rnd, { data: Buffer.alloc(0) }),
    () => makeReject(rnd, { triggeredBy: makeAddress(rnd, MAX_ADDRESS), message: randomText(rnd, 3000), data: rnd.bytes(MAX_DATA) }),
    () => makeReject(rnd, { code: 'F00', triggeredBy: '', message: '', data: Buffer.alloc(0) }),
    () => makeReject(rnd, { message: 'zahlung abgelehnt: ä€𝄞 — 你好 🙂\n\t\u0000' }),
    () => makeIldcpResponse(rnd, { clientAddress: makeAddress(rnd, MAX_ADDRESS), assetScale: 255, assetCode: '€'.repeat(85) }),
    () => makeIldcpResponse(rnd, { clientAddress: 'example.client', assetScale: 13, assetCode: 'XAM' })
  ]
  const makers = [makePrepare, makePrepare, makePrepare, makeFulfill, makeFulfill, makeReject, makeReject, makeReject, makeIldcpResponse, makeIldcpRequest]
  const lines = []
  for (let i = 0; i < count; i++) {
    const item = i < edges.length ? edges[i]() : rnd.pick(makers)(rnd)
    lines.push(JSON.stringify(item))
  }
  return lines
}

function decodeLine (line) {
  const space = line.indexOf(' ')
  const kind = line.slice(0, space)
  const buf = Buffer.from(line.slice(space + 1).trim(), 'hex')
  if (kind === 'packet') {
    const packet = IlpPacket.deserializeIlpPacket(buf)
    const hex = IlpPacket.serializeIlpPacket(packet).toString('hex')
    if (packet.type === IlpPacket.Type.TYPE_ILP_PREPARE) {
      return { ok: true, kind: 'prepare', fields: prepareFields(packet.data), hex }
    } else if (packet.type === IlpPacket.Type.TYPE_ILP_FULFILL) {
      return { ok: true, kind: 'fulfill', fields: fulfillFields(packet.data), hex }
    }
    return { ok: true, kind: 'reject', fields: rejectFields(packet.data), hex }
  } else if (kind === 'ildcp_response') {
    const info = ILDCP.deserializeIldcpResponse(buf)
    return { ok: true, kind, fields: info, hex: ILDCP.serializeIldcpResponse(info).toString('hex') }
  } else if (kind === 'ildcp_request') {
    const request = ILDCP.deserializeIldcpRequest(buf)
    return {
      ok: true,
      kind,
      fields: { expiresAt: request.expiresAt.getTime(), expiresAtIso: request.expiresAt.toISOString(), data: request.data.toString('hex') },
      hex: ILDCP.serializeIldcpRequest(request).toString('hex')
    }
  }
  throw new Error('unknown kind ' + JSON.stringify(kind))
}

function decode (input) {
  const out = []
  for (const line of input.split('\n')) {
    if (!line.trim()) continue
    try {
      out.push(JSON.stringify(decodeLine(line)))
    } catch (err) {
      out.push(JSON.stringify({ ok: false, error: String(err && err.message ? err.message : err) }))
    }
  }
  return out
}

function print (lines) {
  process.stdout.write(lines.length ? lines.join('\n') + '\n' : '')
}

function main (argv) {
  const mode = argv[0]
  if (mode === 'generate') {
    const seed = Number(argv[1] || 1)
    const count = Number(argv[2] || 300)
    if (!Number.isInteger(seed) || !Number.isInteger(count) || count < 0) {
      throw new Error('usage: node packets.js generate SEED COUNT')
    }
    print(generate(seed, count))
  } else if (mode === 'decode') {
    // read stdin as a stream: readFileSync(0) fails with EAGAIN on a non-blocking pipe
    const chunks = []
    process.stdin.on('data', (chunk) => chunks.push(chunk))
    process.stdin.on('end', () => print(decode(Buffer.concat(chunks).toString('utf8'))))
  } else {
    process.stderr.write('usage: node packets.js generate SEED COUNT | node packets.js decode < lines\n')
    process.exitCode = 2
  }
}

main(process.argv.slice(2))
