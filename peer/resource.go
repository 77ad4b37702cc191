// Package peer shares what the NameServers said among the replicas of one rocketpilot, so that only one of them
// polls the NameServers (docs/architecture.md, "Replicas and the NameServers"). The leader, the one replica that
// runs NameServer watchers, serves every topic's routes as its sources reported them (before policies, which
// every replica applies itself) and every source's broker table, over delta xDS on its xDS port (Server); the
// other replicas take them into their own tables under the same source names (Follower). A follower that takes
// the lead starts its watchers with those names, so the routes it learned from the leader are served until its
// own watchers have synced: no sidecar sees an empty or partial world.
package peer

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/rocketpilot/rocketpilot/routing"
)

// TypeURL is the resource type replicas share: one resource per topic (named by the topic) holding what each
// source reported of it, and one (BrokersName) holding every source's broker table. Each is JSON in a
// google.protobuf.BytesValue; the type is rocketpilot's own and served on a service of its own (Service), never
// to Envoy or to sidecars.
const TypeURL = "type.googleapis.com/rocketpilot.peer.v1.SourceRoutes"

// BrokersName names the resource of the sources' broker tables: with a character no RocketMQ topic name has
// (their characters are letters, digits, '%', '|', '-' and '_').
const BrokersName = "brokers:"

// topicResource is what a topic's resource holds: every source's route, sorted by source.
type topicResource struct {
	Sources []routing.SourceRoute `json:"sources"`
}

// brokersResource is every source's broker table, by source.
type brokersResource struct {
	Sources map[string][]routing.Broker `json:"sources"`
}

func encode(v any) (*wrapperspb.BytesValue, []byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, nil, err
	}
	return wrapperspb.Bytes(b), b, nil
}

// decodeResource reads a resource's value as the JSON in a BytesValue, into v.
func decodeResource(value []byte, v any) error {
	var w wrapperspb.BytesValue
	if err := proto.Unmarshal(value, &w); err != nil {
		return fmt.Errorf("not a BytesValue: %w", err)
	}
	if err := json.Unmarshal(w.Value, v); err != nil {
		return fmt.Errorf("not the expected JSON: %w", err)
	}
	return nil
}
