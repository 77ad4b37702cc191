// Package interop proves, with real RocketMQ client libraries over real TCP on loopback, that rocketpilot's
// embedded NameServer (github.com/rocketpilot/rocketpilot/nameserver/embedded) speaks the remoting protocol the
// way clients expect. Its tests are the only code; this file only documents them.
//
// What is proved:
//
//   - The official Go client, github.com/apache/rocketmq-client-go/v2: its admin API lists every topic (206)
//     and resolves TopicTest's publish queues and clusters (105); an unknown topic yields ErrTopicNotExist. The
//     client sends request version 317, so it receives the legacy fastjson route body with bare numeric
//     broker-id keys that encoding/json rejects; a spy proxy records the frames to show that this form, and both
//     header serializations (JSON and ROCKETMQ binary) the server can be configured with, went over the wire.
//
//   - Its producer resolves a topic's route through the embedded NameServer and sends to the master (broker id
//     0) of a writable broker group, never to a slave or a read-only group. The brokers are fakes run by the
//     test on loopback, speaking just enough of the broker protocol with rocketpilot's remoting codec.
//
//   - The pure-JavaScript client ali-ons (npm, pinned in node/package-lock.json) fetches TopicTest's route with
//     its own MQClientAPI and parses both the legacy and the standard JSON dialect. This needs node and
//     `./setup.sh` (npm ci); without them the test is skipped locally and fails when the CI variable is set.
//
//   - Envoy's RocketMQ proxy filter answers 105 itself, in its own shape: one QueueData per host, stray keys
//     from a reused protobuf Struct in every broker entry and at the top level, quoted broker ids, language CPP,
//     and SYSTEM_ERROR "Cluster is not available" (not TOPIC_NOT_EXIST) for a topic without a route. Byte
//     fixtures of those answers (testdata/envoy-105-*.bin, written by a model of Envoy's encoder; -update
//     rewrites them) are served as the NameServer's answer: both clients derive broker-a's and broker-b's 4
//     queues each from the route, and report an error for the unknown topic; neither parses the {} body of a
//     cluster without hosts.
//
//   - Against the simulated brokers (github.com/rocketpilot/rocketpilot/simbroker), registered with the embedded
//     NameServer as `serve --demo` runs them, stock clients move real messages. The Go client's producer sends
//     10,000 messages of 1 KiB (sync, async, one-way, batches, and ordered sends through a hash selector); its
//     push consumer receives every one, checked by id, body, queue and offset, duplicates counted; an orderly
//     consumer receives each sharding key's messages in order; a restarted consumer resumes from the offsets
//     the brokers kept; two consumers of one group split the 8 queues (GET_CONSUMER_LIST_BY_GROUP 38 and
//     NOTIFY_CONSUMER_IDS_CHANGED 40). The orderly consumer runs in a child process built without the race
//     detector (./orderlyconsumer): the client's orderly consumer has a data race of its own. ali-ons' producer
//     and push consumer do the same with 10,000 messages, and two of its consumers split the queues.
//
//   - Benchmarks (`make bench-broker`): the Go client's produce and consume rates against those brokers, 1 KiB
//     bodies, the baseline for the Go data plane.
//
// Why a separate module: the client libraries pull in logrus, gjson, go-redis, testify and more. Keeping them in
// this module (its own go.mod, with a replace of the main module to ../..) keeps them out of the main module's
// dependency graph, which ships only what rocketpilot itself needs. Run it with `make test-interop`, or
// `./setup.sh && go test -race ./...` here.
package interop
