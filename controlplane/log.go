package controlplane

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/routing"
)

// logModel logs every topic learned, with the broker groups its route uses.
func logModel(log *slog.Logger, table *routing.Table) {
	snap := table.Snapshot()
	names := make([]string, 0, len(snap.Topics))
	for name := range snap.Topics {
		names = append(names, name)
	}
	slices.Sort(names)
	level := slog.LevelInfo
	if len(names) > 1000 {
		level = slog.LevelDebug // a line per topic is for demos and small deployments
	}
	for _, name := range names {
		t := snap.Topics[name]
		log.Log(context.Background(), level, "topic learned", "topic", name, "brokers", brokerNames(t.BrokerSet), "brokerSet", t.BrokerSet.Hash)
	}
	log.Info("routing model ready", "version", snap.Version, "topics", len(snap.Topics),
		"brokerSets", len(snap.BrokerSets), "brokerGroups", len(snap.Brokers))
}

func brokerNames(set *routing.BrokerSet) string {
	var parts []string
	for _, m := range set.Members {
		parts = append(parts, fmt.Sprintf("%s(%s,%s)", m.BrokerName, m.Cluster, remoting.PermString(m.Perm)))
	}
	return strings.Join(parts, " ")
}

// logChanges logs each coalesced change of the model after the initial sync.
func logChanges(ctx context.Context, log *slog.Logger, table *routing.Table) {
	_ = table.Follow(ctx, func(cs routing.ChangeSet) { // ends with ctx
		for name := range cs.Topics {
			if t := table.Topic(name); t != nil {
				log.Debug("topic changed", "topic", name, "brokers", brokerNames(t.BrokerSet), "version", t.Version)
			} else {
				log.Debug("topic removed", "topic", name)
			}
		}
		topics, sets := table.Stats()
		log.Info("routing model changed", "version", cs.Version, "topicsChanged", len(cs.Topics),
			"brokerSetsChanged", len(cs.BrokerSets), "topics", topics, "brokerSets", sets)
	})
}
