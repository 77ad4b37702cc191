// Package embedded is a simulated Apache RocketMQ NameServer that speaks the real remoting protocol over TCP.
//
// It simulates the read side of the Java NameServer (DefaultRequestProcessor, ClientRequestProcessor and
// RouteInfoManager): topic routes (105), cluster info (106), the topic lists (206, 224) and the KV config
// (101, 219), answered with the same codes, remarks and body dialects, in the header serialization the server is
// configured with. Its state is set through Go methods instead of broker registrations and heartbeats: brokers
// are registered and expired by the caller, and every other request code is answered REQUEST_CODE_NOT_SUPPORTED.
//
// It exists for tests and for `rocketpilot serve --demo`. Knobs inject the failures a client must survive:
// disabled topic lists, latency, dropped connections, corrupt frames and outages that keep the address. It holds a
// million topics cheaply: topics with the same queue-data shape share one immutable slice.
package embedded
