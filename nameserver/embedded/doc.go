// Package embedded is a simulated Apache RocketMQ NameServer that speaks the real remoting protocol over TCP.
//
// It simulates the Java NameServer (DefaultRequestProcessor, ClientRequestProcessor and RouteInfoManager) for
// topic routes (105), cluster info (106), the topic lists (206, 224) and the KV config (101, 219), answered with
// the same codes, remarks and body dialects, in the header serialization the server is configured with. Its state
// is set through Go methods, or by brokers over TCP: REGISTER_BROKER (103) records a broker and files the queue
// data of its topics as RouteInfoManager.registerBroker does, UNREGISTER_BROKER (104) removes it, a broker whose
// connection closes is removed at once (BrokerHousekeepingService), and one that stops re-registering expires
// after its heartbeat timeout (scanNotActiveBroker, every Options.ScanInterval). Brokers set through Go methods
// never expire. Every other request code is answered REQUEST_CODE_NOT_SUPPORTED.
//
// It exists for tests and for `rocketpilot serve --demo`. Knobs inject the failures a client must survive:
// disabled topic lists, latency, dropped connections, corrupt frames and outages that keep the address. It holds a
// million topics cheaply: topics with the same queue-data shape share one immutable slice.
package embedded
