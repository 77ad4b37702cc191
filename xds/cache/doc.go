// Package cache is rocketpilot's implementation of go-control-plane's cache.Cache: the versioned, per-resource
// store that xDS streams read, built for on-demand use at scale.
//
// It does what go-control-plane's own caches cannot (REFERENCE §3): it serves the RocketMQ route type and ECDS
// per node, answers a subscribed name that does not exist with removed_resources at once and remembers it, and
// updates in time proportional to what changed.
//
//   - Resources carry content-hash versions and are marshalled once per version; every stream shares the bytes.
//   - Topic routes are materialised only while some stream uses them (explicitly, or through a node's scope), so
//     a million topics cost nothing here until sidecars ask for them.
//   - A wildcard subscription means "what this node uses": for routes, listeners and ECDS the node's scope; for
//     clusters and endpoints, the clusters its topics route to.
//   - Watches are one-shot, as go-control-plane's servers expect: a stream gets one response per request and the
//     next is computed from the latest state when it asks again, so a slow stream gets the latest state, never a
//     queue.
//   - Make before break: a node's ECDS and listener responses wait until its CDS and EDS subscriptions have been
//     sent the clusters they name.
//
// It also implements the servers' callbacks, to know which stream a request belongs to, and records per stream
// what was sent, acknowledged and rejected (StreamStatus). What a stream holds is the cache's own record, updated
// when it queues a response: go-control-plane's copy is updated only when its stream goroutine sends the response,
// which may be after the cache computed the next one.
//
// Its files, by responsibility:
//
//   - cache.go: the Cache, New, and applying the table's changes (Apply, Run, Sweep).
//   - topics.go: materialised routes, and the clusters of broker sets.
//   - views.go: scopes, nodes, and what a stream sees (wildcard views, clusters used, lookup).
//   - stream.go: a stream's record and its subscriptions, by go-control-plane's rules.
//   - watch.go: watches, registering them and answering them, shared by both protocols.
//   - delta.go and sotw.go: the delta and state-of-the-world responders (CreateDeltaWatch, CreateWatch, Fetch).
//   - gate.go: make before break; retention.go: how long a node keeps a cluster that left its view.
//   - callbacks.go: go-control-plane's server callbacks (ACK, NACK, stale nonces).
//   - status.go and served.go: the admin side (streams, config dumps, previews, rejections; what is served);
//     metrics.go: the Prometheus series; resource.go: a marshalled resource, and node metadata.
package cache
