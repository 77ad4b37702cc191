'use strict';

// Produces to or consumes from a RocketMQ topic with ali-ons' Producer and push Consumer (clustering), through a
// NameServer given directly (ali-ons' `nameSrv` option, so no HTTP address server is involved). Every line it
// prints to stdout is one JSON object; diagnostics go to stderr.
//
//   node produce_consume.js produce <host:port> <topic> <count> <key prefix> [<concurrency>]
//   node produce_consume.js consume <host:port> <topic> <consumer group> [<ms per message>]
//
// produce sends <count> messages, each with the key "<key prefix>-<i>" (i from 0) and tag "interop", at most
// <concurrency> (default 8) in flight, and prints one line per message sent, then a summary:
//   {"sent": {"key", "msgId", "brokerName", "queueId", "queueOffset", "status"}}
//   {"produced": {"count", "errors", "ms"}}
// A send that fails prints {"sendError": {"key", "name", "code", "message"}} instead of "sent".
//
// consume subscribes the group to the topic (tag "*"), taking <ms per message> (default 0) to consume each, and
// prints, as they happen:
//   {"queues": [{"brokerName", "queueId"}]}   the topic's queues allocated to this consumer, whenever they change
//   {"msg": {"key", "msgId", "brokerName", "queueId", "queueOffset", "reconsumeTimes"}}  one per message consumed
// and, once stdin ends (the caller's signal to stop), it closes the consumer, which commits its offsets and
// unregisters from the brokers, and prints {"closed": {"clientId", "errors", "retryRouteMisses"}}. A new group's
// retry topic (%RETRY%<group>) exists only once the brokers have had the group's first heartbeat, and the client
// looks its route up before it sends one (as the Java client does): those misses are counted apart, not as errors.
//
// Exit status 0, or 1 on a failure to start, 4 when the watchdog (WATCHDOG_MS) fires, 2 on bad usage.
//
// ali-ons' intervals are shortened so that a test runs in seconds: route polling, heartbeats, rebalancing and
// offset persistence every second (its defaults: 30 s, 30 s, 10 s, 5 s), and a flow-controlled queue waits 100 ms. ali-ons ignores the broker's
// NOTIFY_CONSUMER_IDS_CHANGED (40): its consumers rebalance only on that interval.

const util = require('util');
const { Producer, Consumer, Message } = require('ali-ons');

const WATCHDOG_MS = Number(process.env.WATCHDOG_MS || 120000);
const INTERVAL_MS = 1000;

function usage() {
  process.stderr.write('usage: node produce_consume.js produce <host:port> <topic> <count> <key prefix> [<concurrency>]\n' +
    '       node produce_consume.js consume <host:port> <topic> <consumer group> [<ms per message>]\n');
  process.exit(2);
}

function print(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const [ mode, nameSrv, topic, ...rest ] = process.argv.slice(2);
if (!/^[^:]+:\d+$/.test(nameSrv || '') || !topic ||
    !(mode === 'produce' && (rest.length === 2 || rest.length === 3)) && !(mode === 'consume' && (rest.length === 1 || rest.length === 2))) {
  usage();
}

let errors = 0;
let retryRouteMisses = 0;
const logger = {
  debug() {},
  info() {},
  warn(...a) { process.stderr.write('[ali-ons warn] ' + util.format(...a) + '\n'); },
  error(...a) { process.stderr.write('[ali-ons error] ' + util.format(...a) + '\n'); },
};

function onClientError(err) {
  if (mode === 'consume' && String(err && err.message).includes('No topic route info in name server for the topic: %RETRY%' + rest[0])) {
    retryRouteMisses++;
    process.stderr.write('[ali-ons retry topic not yet registered] ' + util.format(err) + '\n');
    return;
  }
  errors++;
  process.stderr.write('[ali-ons client error] ' + util.format(err) + '\n');
}

setTimeout(() => {
  process.stderr.write(`watchdog: ${mode} did not finish within ${WATCHDOG_MS} ms\n`);
  process.exit(4);
}, WATCHDOG_MS).unref();

const clientOptions = {
  nameSrv,
  // Required by the constructor; only used to look NameServers up through an address server (onsAddr).
  httpclient: { request() { throw new Error('no address server: nameSrv is set'); } },
  logger,
  pollNameServerInteval: INTERVAL_MS,
  heartbeatBrokerInterval: INTERVAL_MS,
  rebalanceInterval: INTERVAL_MS,
  persistConsumerOffsetInterval: INTERVAL_MS,
};

async function produce(count, prefix, concurrency) {
  const producer = new Producer(Object.assign({ producerGroup: 'interop-producer' }, clientOptions));
  producer.on('error', onClientError);
  await producer.ready();
  const start = Date.now();
  let next = 0;
  let failed = 0;
  async function worker() {
    while (next < count) {
      const i = next++;
      const key = `${prefix}-${i}`;
      const msg = new Message(topic, 'interop', JSON.stringify({ i, key }));
      msg.keys = [ key ];
      try {
        const r = await producer.send(msg);
        print({ sent: { key, msgId: r.msgId, brokerName: r.messageQueue.brokerName,
          queueId: Number(r.messageQueue.queueId), queueOffset: r.queueOffset, status: r.sendStatus } });
      } catch (err) {
        failed++;
        print({ sendError: { key, name: err.name, code: typeof err.code === 'number' ? err.code : -1, message: err.message } });
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  print({ produced: { count, errors: failed, ms: Date.now() - start } });
  // Not closed: closing unregisters from every broker, which says nothing more here; the process exits.
}

async function consume(group, delayMs) {
  // Flow control (more than 500 messages cached for a queue) pauses a queue's pulls for 100 ms, not 5 s.
  const consumer = new Consumer(Object.assign({ consumerGroup: group, pullTimeDelayMillsWhenFlowControl: 100 }, clientOptions));
  consumer.on('error', onClientError);
  await consumer.ready();
  consumer.subscribe(topic, '*', async (msg, mq) => {
    if (delayMs > 0) {
      await new Promise(resolve => setTimeout(resolve, delayMs));
    }
    print({ msg: { key: msg.keys, msgId: msg.msgId, brokerName: mq.brokerName, queueId: Number(msg.queueId),
      queueOffset: Number(msg.queueOffset), reconsumeTimes: msg.reconsumeTimes } });
  });

  // Report the topic's queues allocated to this consumer whenever they change (the retry topic's are left out).
  let last = '';
  const report = () => {
    const queues = [];
    for (const { messageQueue: mq } of consumer.processQueueTable.values()) {
      if (mq.topic === topic) {
        queues.push({ brokerName: mq.brokerName, queueId: Number(mq.queueId) });
      }
    }
    queues.sort((a, b) => (a.brokerName === b.brokerName ? a.queueId - b.queueId : a.brokerName < b.brokerName ? -1 : 1));
    const now = JSON.stringify(queues);
    if (now !== last) {
      last = now;
      print({ queues });
    }
  };
  const timer = setInterval(report, 50);

  await new Promise(resolve => {
    process.stdin.on('end', resolve);
    process.stdin.on('error', resolve);
    process.stdin.resume();
  });
  clearInterval(timer);
  const clientId = consumer._mqClient.clientId;
  await consumer.close();
  print({ closed: { clientId, errors, retryRouteMisses } });
}

async function main() {
  try {
    if (mode === 'produce') {
      const count = Number(rest[0]);
      const concurrency = Number(rest[2] || 8);
      if (!Number.isInteger(count) || count < 0 || !Number.isInteger(concurrency) || concurrency < 1) {
        usage();
      }
      await produce(count, rest[1], concurrency);
    } else {
      const delayMs = Number(rest[1] || 0);
      if (!Number.isInteger(delayMs) || delayMs < 0) {
        usage();
      }
      await consume(rest[0], delayMs);
    }
  } catch (err) {
    process.stderr.write(`${mode} failed: ${util.format(err)}\n`);
    process.exit(1);
  }
  process.exit(0);
}

main();
