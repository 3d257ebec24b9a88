'use strict'
// A JavaScript child of the hub's `kids` account (examples/hub.json), on loopback.
//
// It uses the real npm packages that the test suite installs under interop/
// (ilp-plugin-http 1.6.1, ilp-packet, ilp-protocol-ildcp). From the repository
// root, with the hub and its peers running (README.md, docs/tutorial.rst):
//
//   npm ci --prefix interop
//   node examples/js-child.js            # IL-DCP, one Prepare to test.hub.bob, exit
//   node examples/js-child.js --stay     # the same, then keep answering until Ctrl-C
//   node examples/js-child.js --port 8790 --hub http://127.0.0.1:8771/
//
// The ports default to the walk-through's: this child listens on 7790 and the
// hub's `kids` account is http://127.0.0.1:7771/. If you moved them (README.md:
// "change the ports ... together"), give --port and --hub, or set
// JS_CHILD_PORT and HUB_KIDS_URL.
//
// No NODE_PATH is needed: `need` below resolves the packages from
// interop/node_modules, wherever you run it from. With the packages installed
// elsewhere (`npm install ilp-plugin-http@1.6.1 ilp-packet ilp-protocol-ildcp`),
// use plain `require` instead.
//
// What it does:
// 1. connect(): listen on 127.0.0.1:7790 (--port). The JS plugin's ILP-Peer-Name is its
//    own port, "7790", so the hub's URL template http://127.0.0.1:%/ reaches
//    this child at http://127.0.0.1:7790/.
// 2. IL-DCP: ask the hub for our address (test.hub.kids.7790) and asset.
// 3. A data handler that fulfils a Prepare whose condition is the SHA-256 of
//    FULFILLMENT (the preimage examples/peers.py knows too), and answers any
//    other Prepare with Reject F05 Wrong Condition.
// 4. Send one Prepare of 10 to test.hub.bob with that condition: bob's side
//    (examples/peers.json) fulfils it; print the Fulfill.
// 5. disconnect() and exit: 0 after a Fulfill, 1 otherwise.

const crypto = require('crypto')
const fs = require('fs')
const path = require('path')
const { createRequire } = require('module')

const need = createRequire(path.join(__dirname, '..', 'interop', 'package.json'))
const PluginHttp = need('ilp-plugin-http')
const IlpPacket = need('ilp-packet')
const ILDCP = need('ilp-protocol-ildcp')

// `--flag value` on the command line, else the environment variable, else the default.
function option (flag, variable, fallback) {
  const at = process.argv.indexOf(flag)
  if (at !== -1 && at + 1 < process.argv.length) return process.argv[at + 1]
  return process.env[variable] || fallback
}

const PORT = Number(option('--port', 'JS_CHILD_PORT', '7790'))
const HUB_KIDS = option('--hub', 'HUB_KIDS_URL', 'http://127.0.0.1:7771/')
if (!Number.isInteger(PORT) || PORT < 1 || PORT > 65535) {
  console.error('js-child: --port (JS_CHILD_PORT) must be a port number from 1 to 65535')
  process.exit(2)
}
const FULFILLMENT = Buffer.from('ilphttp walk-through fulfillment') // 32 bytes
const CONDITION = crypto.createHash('sha256').update(FULFILLMENT).digest()
const stay = process.argv.includes('--stay')

// The hub's outgoing token for `kids` is what we expect; its incoming token is
// what we send.
function token (name) {
  return fs.readFileSync(path.join(__dirname, 'secrets', name), 'utf8').trim()
}

// ilp-plugin-http 1.6.1 listens with app.listen(port): on every interface.
// Bind its server to loopback instead (the plugin builds it with Koa).
const Koa = need('koa')
const listen = Koa.prototype.listen
Koa.prototype.listen = function (port) {
  const server = listen.call(this, port, '127.0.0.1')
  server.on('error', (err) => {
    // e.g. a second js-child on the same port: one line, not a stack trace
    console.error(`js-child: cannot listen on 127.0.0.1:${port}: ${err.code || err.message}`)
    process.exit(1)
  })
  return server
}

const plugin = new PluginHttp({
  incoming: { port: PORT, staticToken: token('kids-outgoing.token') },
  outgoing: { url: HUB_KIDS, staticToken: token('kids-incoming.token') }
})

let address = 'test.hub.kids.' + PORT // until IL-DCP tells us

plugin.registerDataHandler(async (packet) => {
  const prepare = IlpPacket.deserializeIlpPrepare(packet)
  if (prepare.executionCondition.equals(CONDITION)) {
    console.log(`received ${prepare.amount} for ${prepare.destination}: Fulfill`)
    return IlpPacket.serializeIlpFulfill({
      fulfillment: FULFILLMENT,
      data: Buffer.from('fulfilled by ' + address)
    })
  }
  console.log(`received ${prepare.amount} for ${prepare.destination}: unknown condition, F05`)
  return IlpPacket.serializeIlpReject({
    code: 'F05',
    triggeredBy: address,
    message: address + ' knows no fulfillment for this condition',
    data: Buffer.alloc(0)
  })
})

async function main () {
  await plugin.connect()
  console.log(`listening on http://127.0.0.1:${PORT}/ as child ${PORT} of ${HUB_KIDS}`)

  const info = await ILDCP.fetch((data) => plugin.sendData(data))
  address = info.clientAddress
  console.log(`IL-DCP: ${info.clientAddress}, ${info.assetCode} scale ${info.assetScale}`)

  const prepare = {
    destination: 'test.hub.bob',
    amount: '10',
    executionCondition: CONDITION,
    expiresAt: new Date(Date.now() + 30000),
    data: Buffer.from('hello from ' + address)
  }
  console.log(`Prepare of ${prepare.amount} to ${prepare.destination}`)
  const reply = IlpPacket.deserializeIlpPacket(await plugin.sendData(IlpPacket.serializeIlpPrepare(prepare)))
  let fulfilled = false
  if (reply.type === IlpPacket.Type.TYPE_ILP_FULFILL) {
    fulfilled = reply.data.fulfillment.equals(FULFILLMENT)
    console.log(`Fulfill: ${reply.data.fulfillment.toString('hex')}`)
    console.log(`  data: ${reply.data.data.toString('utf8')}`)
  } else if (reply.type === IlpPacket.Type.TYPE_ILP_REJECT) {
    console.log(`Reject ${reply.data.code}: ${reply.data.message} (triggered by ${reply.data.triggeredBy})`)
  } else {
    console.log(`not a reply: ${reply.typeString}`)
  }

  if (stay) {
    console.log(`answering Prepares for ${address} until Ctrl-C`)
    const stop = () => plugin.disconnect().then(() => process.exit(fulfilled ? 0 : 1))
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
    return
  }
  await plugin.disconnect()
  process.exitCode = fulfilled ? 0 : 1
}

main().catch((err) => {
  console.error('js-child: ' + (err && err.message ? err.message : err))
  process.exit(1)
})
