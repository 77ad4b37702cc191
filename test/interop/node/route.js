'use strict';

// Fetches one topic's route from a RocketMQ NameServer with ali-ons' own client API (MQClientAPI, the remoting
// client its producer and consumer use) and prints it to stdout as one line of JSON.
//
//   node route.js <host:port> <topic> [--standard]
//
// The NameServer is given directly (ali-ons' `nameSrv` option), so no HTTP address server is involved. ali-ons
// sends 105 with request version 121, so the NameServer answers in the legacy fastjson dialect (bare numeric
// broker-id keys). With --standard the request also carries acceptStandardJsonOnly=true, as RocketMQ 4.9.4+
// clients send, and the answer is standard JSON; the same ali-ons code path parses both.
//
// Output: {"route": <TopicRouteData as ali-ons parsed it>} and exit status 0, or
// {"error": {"name", "code", "message"}} and exit status 3 when the NameServer answered with an error code (for
// example 17, TOPIC_NOT_EXIST), 1 on any other failure (connection refused...), 4 on timeout, 2 on bad usage.
// Diagnostics go to stderr.

const util = require('util');
const MQClientAPI = require('ali-ons/lib/mq_client_api');
const RemotingCommand = require('ali-ons/lib/protocol/command/remoting_command');
const RequestCode = require('ali-ons/lib/protocol/request_code');

const TIMEOUT_MS = 10000;

function usage() {
  process.stderr.write('usage: node route.js <host:port> <topic> [--standard]\n');
  process.exit(2);
}

function print(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const args = process.argv.slice(2);
const flags = args.filter(a => a.startsWith('--'));
const positional = args.filter(a => !a.startsWith('--'));
if (positional.length !== 2 || flags.some(f => f !== '--standard')) {
  usage();
}
const [ nameSrv, topic ] = positional;
if (!/^[^:]+:\d+$/.test(nameSrv)) {
  usage();
}
const standard = flags.includes('--standard');

if (standard) {
  // Add the field a 4.9.4+ Java client sets; everything else stays ali-ons' own request building.
  const create = RemotingCommand.createRequestCommand;
  RemotingCommand.createRequestCommand = (code, customHeader) => {
    if (code === RequestCode.GET_ROUTEINTO_BY_TOPIC) {
      customHeader = Object.assign({}, customHeader, { acceptStandardJsonOnly: 'true' });
    }
    return create(code, customHeader);
  };
}

const logger = {
  debug() {},
  info() {},
  warn(...a) { process.stderr.write('[ali-ons warn] ' + util.format(...a) + '\n'); },
  error(...a) { process.stderr.write('[ali-ons error] ' + util.format(...a) + '\n'); },
};

const watchdog = setTimeout(() => {
  print({ error: { name: 'Timeout', code: -1, message: `no answer from ${nameSrv} within ${TIMEOUT_MS} ms` } });
  process.exit(4);
}, TIMEOUT_MS);

async function main() {
  const api = new MQClientAPI({
    nameSrv,
    // Required by the constructor; only used to look NameServers up through an address server (onsAddr).
    httpclient: { request() { throw new Error('no address server: nameSrv is set'); } },
    logger,
    responseTimeout: TIMEOUT_MS / 2,
  });
  api.on('error', err => process.stderr.write('[ali-ons client error] ' + util.format(err) + '\n'));
  let code = 0;
  try {
    await api.ready();
    const route = await api.getTopicRouteInfoFromNameServer(topic, TIMEOUT_MS / 2);
    print({ route });
  } catch (err) {
    const remote = err.name === 'MQClientException' && typeof err.code === 'number';
    print({ error: { name: err.name, code: remote ? err.code : -1, message: err.message } });
    code = remote ? 3 : 1;
  } finally {
    await api.close().catch(err => console.error('[close]', err));
    clearTimeout(watchdog);
  }
  process.exit(code);
}

main();
