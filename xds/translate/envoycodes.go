package translate

// EnvoyDispatchedCodes are the request codes Envoy's RocketMQ filter handles (contrib/rocketmq_proxy,
// conn_manager.cc, the switch of ConnectionManager::dispatch), in ascending order. Every other code is answered
// by the filter itself with SYSTEM_ERROR (1) and the remark "Request not supported", and never reaches a route or
// a broker.
//
//   - 10, 310 (SEND_MESSAGE, SEND_MESSAGE_V2): routed, with the header's queueId forced to -1.
//   - 34, 35, 38 (HEART_BEAT, UNREGISTER_CLIENT, GET_CONSUMER_LIST_BY_GROUP): answered from the connection's own
//     state, never forwarded.
//   - 50, 51: Envoy's own PopMessage and AckMessage (in Apache RocketMQ these numbers are
//     UPDATE_AND_CREATE_ACL_CONFIG and DELETE_ACL_CONFIG): routed.
//   - 105 (GET_ROUTEINFO_BY_TOPIC): answered from the cluster of the route it matches.
//
// SendCodes, ConsumeCodes and AckCodes hold only 10, 310, 50 and 51, the codes Envoy routes. PullCodes (11) is
// one Envoy never dispatches, matched by the pop routes only the Go sidecar reads; every such code must be listed
// in docs/xds.md with the client that uses it (TestDocsListTheCodesEnvoysFilterDispatches).
var EnvoyDispatchedCodes = []int32{10, 34, 35, 38, 50, 51, 105, 310}

// EnvoyRoutedCodes are the codes of EnvoyDispatchedCodes that the filter forwards to a host of the matched
// route's cluster: sends and its Pop and Ack. The others it answers itself (105 from the cluster of the route it
// matches, which rocketpilot's catch-all route gives), so a route entry that names them by code is never used.
var EnvoyRoutedCodes = []int32{10, 50, 51, 310}
