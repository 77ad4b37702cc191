package translate

import (
	"testing"

	"github.com/rocketpilot/rocketpilot/routing"
)

// TestIsClusterName: every name ClusterName and SendClusterName give has the shape, and nothing else does.
func TestIsClusterName(t *testing.T) {
	_, topics := model(t)
	for _, tp := range topics {
		for _, name := range []string{ClusterName(tp.BrokerSet), SendClusterName(tp.BrokerSet)} {
			if !IsClusterName(name) {
				t.Errorf("%s, a name of broker set %s, is not recognised", name, tp.BrokerSet.Hash)
			}
		}
	}
	if !IsClusterName(ClusterName(&routing.BrokerSet{Hash: "0123456789abcdef"})) {
		t.Error("the cluster of a broker set with no broker cluster is not recognised")
	}
	for _, name := range []string{"", "rmq-", "rmq-C-0123", "rmq-C-0123456789abcdeg", "rmq--0123456789abcdef", "xmq-C-0123456789abcdef",
		"rmq-C-0123456789ABCDEF", "rmq-C-0123456789abcdef-sent", "rmq-a b-0123456789abcdef", "rocketmq-proxy", "t0"} {
		if IsClusterName(name) {
			t.Errorf("%q is taken for a cluster name", name)
		}
	}
}
