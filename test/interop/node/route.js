'use strict';

// Fetches one topic's route from a RocketMQ NameServer with ali-ons' own client API (MQClientAPI, the remoting
// client its producer and consumer use) and prints it to stdout as one line of JSON.
//
//   node route.js <host:port> <topic> [--standard] [--producer]
//
// The NameServer is given directly (ali-ons' `nameSrv` option), so no HTTP address server is involved. ali-ons
// sends 105 with request version 121, so the NameServer answers in the legacy fastjson dialect (bare numeric
// broker-id keys). With --standard the request also carries acceptStandardJsonOnly=true, as RocketMQ 4.9.4+
// clients send, and the answer is standard JSON; the same ali-ons code path parses both.
//
// With --producer the route is resolved the way a producer does before it sends: an ali-ons Producer's
// tryToFindTopicPublishInfo (MQClient.updateTopicRouteInfoFromNameServer, which turns the route into the
// producer's message queues), then one selectOneMessageQueue per queue, each with the master address the producer
// would send to (findBrokerAddressInPublish). Nothing is sent, and the producer is not closed (closing would
// unregister from the route's brokers, which the tests do not run): the process exits.
//
// Output: {"route": <TopicRouteData as ali-ons parsed it>}, or with --producer {"producer": {"publish": [queue],
// "picks": [queue and addr], "subscribe": [queue]}} (a queue is {"brokerName", "queueId"}; subscribe is what
// MQClient derives for consumers from the same route), and exit status 0, or
// {"error": {"name", "code", "message"}} and exit status 3 when the NameServer answered with an error code (for
// example 17, TOPIC_NOT_EXIST), 1 on any other failure (connection refused...), 4 on timeout, 2 on bad usage.
// Diagnostics go to stderr.

const util = require('util');
const MQClientAPI = require('ali-ons/lib/mq_client_api');
const RemotingCommand = require('ali-ons/lib/protocol/command/remoting_command');
const RequestCode = require('ali-ons/lib/protocol/request_code');
const Producer = require('ali-ons').Producer;

const TIMEOUT_MS = 10000;

function usage() {
  process.stderr.write('usage: node route.js <host:port> <topic> [--standard] [--producer]\n');
  process.exit(2);
}

function print(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const args = process.argv.slice(2);
const flags = args.filter(a => a.startsWith('--'));
const positional = args.filter(a => !a.startsWith('--'));
if (positional.length !== 2 || flags.some(f => f !== '--standard' && f !== '--producer')) {
  usage();
}
const [ nameSrv, topic ] = positional;
if (!/^[^:]+:\d+$/.test(nameSrv)) {
  usage();
}
const standard = flags.includes('--standard');
const producerMode = flags.includes('--producer');

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

const clientOptions = {
  nameSrv,
  // Required by the constructor; only used to look NameServers up through an address server (onsAddr).
  httpclient: { request() { throw new Error('no address server: nameSrv is set'); } },
  logger,
  responseTimeout: TIMEOUT_MS / 2,
};

function onClientError(err) {
  process.stderr.write('[ali-ons client error] ' + util.format(err) + '\n');
}

// fetchRoute returns the route as MQClientAPI parsed it, and a function that releases the client.
async function fetchRoute() {
  const api = new MQClientAPI(clientOptions);
  api.on('error', onClientError);
  await api.ready();
  const close = () => api.close().catch(err => console.error('[close]', err));
  try {
    return [{ route: await api.getTopicRouteInfoFromNameServer(topic, TIMEOUT_MS / 2) }, close];
  } catch (err) {
    await close();
    throw err;
  }
}

// resolveAsProducer returns the queues an ali-ons Producer derives from the route, and a release that does
// nothing (see above: the producer is not closed).
async function resolveAsProducer() {
  const producer = new Producer(Object.assign({ producerGroup: 'interop-producer' }, clientOptions));
  producer.on('error', onClientError);
  await producer.ready();
  const info = await producer.tryToFindTopicPublishInfo(topic);
  const client = producer._mqClient;
  const queue = mq => ({ brokerName: mq.brokerName, queueId: mq.queueId });
  const picks = info.messageQueueList.map(() => {
    const mq = info.selectOneMessageQueue();
    return Object.assign(queue(mq), { addr: client.findBrokerAddressInPublish(mq.brokerName) });
  });
  const subscribe = client._topicRouteData2TopicSubscribeInfo(topic, client._topicRouteTable.get(topic));
  const result = { producer: { publish: info.messageQueueList.map(queue), picks, subscribe: subscribe.map(queue) } };
  return [ result, async () => {} ];
}

async function main() {
  let code = 0;
  try {
    const [ result, close ] = await (producerMode ? resolveAsProducer() : fetchRoute());
    await close();
    print(result);
  } catch (err) {
    const remote = err.name === 'MQClientException' && typeof err.code === 'number';
    print({ error: { name: err.name, code: remote ? err.code : -1, message: err.message } });
    code = remote ? 3 : 1;
  } finally {
    clearTimeout(watchdog);
  }
  process.exit(code);
}

main();
