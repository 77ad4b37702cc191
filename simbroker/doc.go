// Package simbroker is a simulated Apache RocketMQ broker, for the demo and the tests: not a production broker.
// It keeps messages in memory, in a bounded store per queue (the oldest message of a full queue is dropped and
// counted, as retention would delete it), and forgets everything when it is closed.
//
// What it simulates faithfully is the wire: a loopback TCP server speaking the remoting protocol with the Java
// broker's request codes, headers, response codes and message bytes (remoting/message), so that stock clients
// (rocketmq-client-go, ali-ons) produce and consume against it unchanged, and the Go sidecar has brokers to route
// to. Each request is handled as the Java processor named in its handler's comment handles it: send (10, 310,
// 320, a batch stored in one piece), pull with long polling (11), consumer offsets (14, 15, 29, 30, 31), client
// heartbeats and consumer groups (34, 35, 38, with NOTIFY_CONSUMER_IDS_CHANGED 40 pushed to a group's clients),
// send back to the retry topic with delay levels (36), queue locks for orderly consumers (41, 42), and Pop (200050,
// 200051, 200053, 200151, orderly Pop included) with receipt handles in ExtraInfoUtil's format. Every other code
// is answered "request code not supported", as Java answers it, and the connection stays open.
//
// A broker registers with its NameServers (REGISTER_BROKER 103) before Start returns and then on an interval, so
// it shows in their answers. Fault hooks let tests prove that a data plane keeps working: Stop (unregisters and
// leaves at once, as a stopped Java broker does), Kill (silent: the NameServers expire it after its heartbeat
// timeout), Start again on the same address with the same messages, SetLatency, SetPerm and SetWritable.
// StartDemo starts the demo's broker groups, as `rocketpilot serve --demo` runs them.
package simbroker
