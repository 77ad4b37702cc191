// Package dataplane is the Go sidecar's proxy (`rocketpilot sidecar`): a RocketMQ-aware proxy, configured only by
// rocketpilot's xDS, that an unchanged application uses by pointing its NameServer address at it.
//
// It listens for the application twice over. Its NameServer port answers route queries (105) from xDS on demand,
// with every broker group's address replaced by a port of the sidecar's own for that group. A connection to a
// group's port is the application talking to that group, so the sidecar knows which broker each request was meant
// for without reading it: the port is the broker's identity. Requests are then routed by the topic's routes as the
// control plane served them, looked up on every request, so that a change applies to the next one:
//
//   - sends go to the writable masters of the topic's route: to the group the client chose when it is one of them
//     and no weights say otherwise, else to one picked by the send weights, with a queue of that group (a
//     drained or read-only group is never sent to); an ordered topic keeps the client's queue where it can;
//   - everything else (pulls, offsets, heartbeats, consumer lists, locks, send back, Pop) goes to the master of
//     the port's group.
//
// Each application connection has its own upstream connection per broker it reaches, so request ids (opaque) are
// the application's own; requests a broker sends to the application (NOTIFY_CONSUMER_IDS_CHANGED and others) get an
// id of the sidecar's and their answers go back to that broker. A request that cannot be routed is answered with
// the error a broker would send, with a reason.
package dataplane
