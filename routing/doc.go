// Package routing is the model every source writes and the xDS layer reads: topics, the broker sets their routes
// resolve to, and the broker groups the NameServers know.
//
// A BrokerSet is the content-addressed shape of a topic's route (which broker groups, their ids and addresses, and
// per-group queue counts and perm). Topics with the same shape share one BrokerSet value, so a million topics over
// a handful of broker groups hold a handful of BrokerSets. The Table merges what several sources report, versions
// every change, and tells subscribers which topics and broker sets changed; applying one topic's change costs work
// proportional to that change, never to the size of the table.
//
// routing imports no source and no consumer: nameserver and controllers write into it, xds reads from it.
package routing
