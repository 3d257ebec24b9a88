'use strict'
// A real ilp-connector (23.0.2), in-process, driven by the JSON control protocol
// of control.js.
//
//   node connector.js '<json>' | <file.json>
//
// The config is ilp-connector's own option object (what `createApp(opts)`
// takes; the same keys as its CONNECTOR_* environment variables, camelCase),
// e.g. {"ilpAddress":"test.conn","accounts":{"alice":{"relation":"child",
// "plugin":"ilp-plugin-http","assetCode":"USD","assetScale":9,"options":{...}}}}.
// Defaults filled in when absent: ilpAddress "test.connector", backend
// "one-to-one", spread 0, store "memory", adminApi false,
// initialConnectTimeout 5000.  All plugin servers bind 127.0.0.1 (control.js);
// an admin API, if enabled, binds adminApiHost (default 127.0.0.1).
//
// Ready line: {"event":"ready","address":<own ILP address>,
//              "accounts":{"<id>":{"connected":bool,"port":<incoming port|null>}}}
// Commands: "info" (same fields as ready), "addAccount" {accountId, info},
//           "removeAccount" {accountId}, "stop".

const control = require('./control')

control.patchKoa()
const reduct = require('reduct').default
const createApp = require('ilp-connector').createApp
const Accounts = require('ilp-connector/dist/services/accounts').default

const opts = Object.assign({
  ilpAddress: 'test.connector',
  backend: 'one-to-one',
  spread: 0,
  store: 'memory',
  adminApi: false,
  initialConnectTimeout: 5000
}, control.loadConfig(process.argv[2]))

const deps = reduct()
const app = createApp(opts, deps)
const accounts = deps(Accounts)

function accountInfo () {
  const out = {}
  for (const id of accounts.getAccountIds()) {
    const plugin = accounts.getPlugin(id)
    const server = plugin && plugin._httpServer
    const address = server && server.listening ? server.address() : null
    out[id] = {
      connected: !!(plugin && plugin.isConnected()),
      port: address ? address.port : null
    }
  }
  return out
}

function info () {
  return { address: accounts.getOwnAddress(), accounts: accountInfo() }
}

control.serve({
  info: async () => info(),
  addAccount: async (msg) => {
    await app.addPlugin(msg.accountId, msg.info)
    const server = accounts.getPlugin(msg.accountId)._httpServer
    if (server) await control.whenListening(server)
    return info()
  },
  removeAccount: async (msg) => {
    await app.removePlugin(msg.accountId)
    return info()
  }
}, async () => { await app.shutdown() })

;(async () => {
  // app.listen() logs its own failures instead of rejecting, so readiness is
  // checked here: every account's plugin must be connected and listening.
  await app.listen()
  for (const id of accounts.getAccountIds()) {
    const plugin = accounts.getPlugin(id)
    if (!plugin.isConnected()) throw new Error('account did not connect: ' + id)
    if (plugin._httpServer) await control.whenListening(plugin._httpServer)
  }
  control.emit(Object.assign({ event: 'ready' }, info()))
})().catch((err) => {
  control.log('connector failed to start:', (err && err.stack) || err)
  control.emit({ event: 'fatal', error: control.describe(err) })
  process.exit(1)
})
