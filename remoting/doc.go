// Package remoting implements the RocketMQ remoting protocol (NameServer and broker side): frames, the two header
// encodings (JSON and the binary "ROCKETMQ" form), and the bodies of the read-only NameServer calls, including the
// legacy fastjson dialect older NameServers and every 106 response use.
//
// It owns bytes on the wire and nothing else: no sockets (see package client), no polling (package watcher), no
// model (package routing). Every decoder checks lengths before it allocates and returns an error, never panics,
// on malformed input; each has a fuzz target.
package remoting
