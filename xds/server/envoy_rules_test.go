package server

// Tests named after the Envoy rules they model (issue 15). Envoy cannot run here; each test cites the Envoy source
// its rule comes from and drives the real server with raw xDS streams shaped like Envoy's.

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/rocketpilot/rocketpilot/internal/promtest"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/translate"

	"github.com/rocketpilot/rocketpilot/internal/testutil"
)

// TestRouteToAWarmingClusterFailsSoTheConfigWaitsForTheACK models Envoy's cluster warming: a cluster added by
// CDS stays warming until its endpoints arrive (source/common/upstream/cluster_manager_impl.cc,
// ClusterManagerImpl::addOrUpdateCluster puts it in warming_clusters_, onClusterInit moves it to the active ones),
// and the RocketMQ filter's router finds no thread-local cluster for a warming or unknown one
// (contrib/rocketmq_proxy/filters/network/source/router/router_impl.cc, RouterImpl::sendRequestToUpstream:
// "Cluster does not exist"). So an ECDS config naming a cluster must reach a client only after the client ACKed
// the cluster and its endpoints, on a single ADS stream or on the per-type services, delta or state of the world.
// The client here delays each ACK: the config does not come before both, and a NACKed cluster holds it back and
// shows in proxy-status.
func TestRouteToAWarmingClusterFailsSoTheConfigWaitsForTheACK(t *testing.T) {
	for _, mode := range xdsModes {
		t.Run(mode.name, func(t *testing.T) {
			s, _ := startModelStack(t, cache.Options{})
			testTopic(s, "warm", 6, "b1")
			first := clusterOf(t, s, "warm")
			id := "envoy-" + strings.ReplaceAll(mode.name, " ", "-")
			c := openClient(t, s.addr, mode, node(id, "warm"))

			// Envoy's start: clusters, then the listener and its filter's config.
			c.subscribe(translate.ClusterType)
			cds := c.next(translate.ClusterType, nil)
			if !slices.Equal(cds.names(), []string{first}) {
				t.Fatalf("clusters %v, want [%s]", cds.names(), first)
			}
			c.subscribe(translate.ListenerType)
			c.ack(c.next(translate.ListenerType, nil))
			c.subscribe(translate.ExtensionType, translate.ExtensionConfigName)
			c.none(translate.ExtensionType, "the client has not accepted the cluster the config names", nil)
			c.ack(cds)
			c.subscribe(translate.EndpointType, first) // Envoy asks for a cluster's endpoints once it took the cluster
			eds := c.next(translate.EndpointType, nil)
			c.none(translate.ExtensionType, "the client has not accepted the cluster's endpoints", nil)
			if w := typeState(t, s, id, translate.ExtensionType).WaitingFor; !slices.Equal(w, []string{first}) {
				t.Fatalf("proxy-status: the config waits for %v, want [%s]", w, first)
			}
			c.ack(eds)
			ecds := c.next(translate.ExtensionType, nil)
			if got := routedClusters(t, ecds); !slices.Equal(got, []string{first}) {
				t.Fatalf("the config routes to %v, want [%s]", got, first)
			}
			c.ack(ecds)

			// The topic moves to a shape new to the client: the change waits for the new cluster's ACKs, and counts
			// as a push (rocketpilot_xds_push_duration_seconds includes the round trip).
			pushes := func() float64 {
				return cacheMetric(t, s, "rocketpilot_xds_pushes_total", map[string]string{"type": "extension_config", "trigger": "change"})
			}
			before := pushes()
			testTopic(s, "warm", 6, "b1", "b2")
			second := clusterOf(t, s, "warm")
			cds = c.next(translate.ClusterType, nil)
			if !slices.Contains(cds.names(), second) {
				t.Fatalf("clusters %v, want %s among them", cds.names(), second)
			}
			c.none(translate.ExtensionType, "the client has not accepted the new cluster", nil)
			c.ack(cds)
			if mode.delta {
				c.subscribe(translate.EndpointType, second)
			} else {
				c.subscribe(translate.EndpointType, first, second)
			}
			eds = c.next(translate.EndpointType, nil)
			c.none(translate.ExtensionType, "the client has not accepted the new cluster's endpoints", nil)
			c.ack(eds)
			ecds = c.next(translate.ExtensionType, nil)
			if got := routedClusters(t, ecds); !slices.Equal(got, []string{second}) {
				t.Fatalf("the config routes to %v, want [%s]", got, second)
			}
			if after := pushes(); after != before+1 {
				t.Fatalf("rocketpilot_xds_pushes_total{type=extension_config,trigger=change} went from %v to %v: the released config is not counted as a push", before, after)
			}
			c.ack(ecds)

			// A change that needs no new cluster costs no round trip: back to the first shape, which the client
			// still holds (retained), goes at once.
			testTopic(s, "warm", 6, "b1")
			ecds = c.next(translate.ExtensionType, nil) // before any response of clusters or endpoints
			if got := routedClusters(t, ecds); !slices.Equal(got, []string{first}) {
				t.Fatalf("the config routes to %v, want [%s]", got, first)
			}
			c.ack(ecds)

			// A rejected cluster holds the config back, and proxy-status says which cluster it waits for.
			testTopic(s, "warm", 6, "b3")
			third := clusterOf(t, s, "warm")
			cds = c.next(translate.ClusterType, nil)
			c.nack(cds, "cluster "+third+": rejected")
			c.none(translate.ExtensionType, "the client rejected the cluster the config names", nil)
			waitFor(t, "proxy-status to show the held config", func() bool {
				ecds, clusters := typeState(t, s, id, translate.ExtensionType), typeState(t, s, id, translate.ClusterType)
				return slices.Equal(ecds.WaitingFor, []string{third}) && clusters.State == cache.Nacked
			})
			held := cacheMetric(t, s, "rocketpilot_xds_configs_held", map[string]string{"type": "extension_config"})
			if held != 1 {
				t.Fatalf("rocketpilot_xds_configs_held{type=extension_config} = %v, want 1", held)
			}
		})
	}
}

// TestRejectedClusterIsNotAcceptedByALaterACK: Envoy's delta subscription state takes nothing of a response it
// rejects (source/extensions/config_subscription/grpc/delta_subscription_state.cc, handleBadResponse keeps the
// resource versions it had), and ACKs the next response on its own merits. A cluster the client rejected stays
// missing when a later response of clusters is accepted: the config that names it stays held.
func TestRejectedClusterIsNotAcceptedByALaterACK(t *testing.T) {
	s, _ := startModelStack(t, cache.Options{})
	testTopic(s, "p", 6, "b1")
	testTopic(s, "q", 6, "b1")
	c := openClient(t, s.addr, xdsModes[0], node("envoy-rejects", "p", "q"))
	envoy := func(r xdsResponse) {
		c.ack(r)
		if r.typeURL == translate.ClusterType && len(r.resources) > 0 {
			c.subscribe(translate.EndpointType, r.names()...)
		}
	}
	c.subscribe(translate.ClusterType)
	c.subscribe(translate.ExtensionType, translate.ExtensionConfigName)
	c.ack(c.next(translate.ExtensionType, envoy))

	testTopic(s, "p", 6, "b2")
	rejected := clusterOf(t, s, "p")
	c.nack(c.next(translate.ClusterType, nil), "cluster "+rejected+": rejected")
	testTopic(s, "q", 6, "b3")
	accepted := clusterOf(t, s, "q")
	cds := c.next(translate.ClusterType, nil)
	if !slices.Equal(cds.names(), []string{accepted}) {
		t.Fatalf("clusters %v, want [%s]", cds.names(), accepted)
	}
	envoy(cds)
	c.ack(c.next(translate.EndpointType, nil))
	c.none(translate.ExtensionType, "the config names "+rejected+", which the client rejected", nil)
	if w := typeState(t, s, "envoy-rejects", translate.ExtensionType).WaitingFor; !slices.Equal(w, []string{rejected}) {
		t.Fatalf("proxy-status: the config waits for %v, want [%s]", w, rejected)
	}
}

// TestCDSAppliesTheClustersItDoesNotReject models Envoy's CDS update: each cluster of a response is added on its
// own, a failure is recorded as "name: reason" and the others (and the removals) are applied; the response is
// NACKed with "Error adding/updating cluster(s) ..." naming only the rejected ones (source/common/upstream/
// cds_api_helper.cc, CdsApiHelper::onConfigUpdate). A cluster that shared a response with a rejected one is with
// the client: a config that names it, and not the rejected one, goes.
func TestCDSAppliesTheClustersItDoesNotReject(t *testing.T) {
	for _, mode := range xdsModes[:2] {
		t.Run(mode.name, func(t *testing.T) {
			s, _ := startModelStack(t, cache.Options{})
			testTopic(s, "p", 6, "b1")
			testTopic(s, "q", 6, "b1")
			first := clusterOf(t, s, "p")
			id := "envoy-partial-" + strings.ReplaceAll(mode.name, " ", "-")
			c := openClient(t, s.addr, mode, node(id, "p", "q"))
			c.subscribe(translate.ClusterType)
			c.ack(c.next(translate.ClusterType, nil))
			c.subscribe(translate.EndpointType, first)
			c.ack(c.next(translate.EndpointType, nil))
			c.subscribe(translate.ExtensionType, translate.ExtensionConfigName)
			c.ack(c.next(translate.ExtensionType, nil))

			// One change, two clusters new to the client in one response: it rejects one, takes the other.
			if err := applyAndWait(s, routing.Update{Topic: "p", Route: &routing.Route{Members: members("b2")}},
				routing.Update{Topic: "q", Route: &routing.Route{Members: members("b3")}}); err != nil {
				t.Fatal(err)
			}
			bad, good := clusterOf(t, s, "p"), clusterOf(t, s, "q")
			cds := c.next(translate.ClusterType, nil)
			if !slices.Contains(cds.names(), bad) || !slices.Contains(cds.names(), good) {
				t.Fatalf("clusters %v, want %s and %s in one response", cds.names(), bad, good)
			}
			c.nack(cds, "Error adding/updating cluster(s) "+bad+": Proto constraint validation failed")
			if mode.delta {
				c.subscribe(translate.EndpointType, good)
			} else {
				c.subscribe(translate.EndpointType, first, good)
			}
			c.ack(c.next(translate.EndpointType, nil))
			c.none(translate.ExtensionType, "the config names "+bad+", which the client rejected", nil)
			if w := typeState(t, s, id, translate.ExtensionType).WaitingFor; !slices.Equal(w, []string{bad}) {
				t.Fatalf("proxy-status: the config waits for %v, want only the rejected [%s]", w, bad)
			}

			// p goes back to a shape the client holds: the config names the first cluster and the one taken.
			testTopic(s, "p", 6, "b1")
			ecds := c.next(translate.ExtensionType, func(r xdsResponse) { c.ack(r) })
			if got := routedClusters(t, ecds); !slices.Equal(got, sorted([]string{first, good})) {
				t.Fatalf("the config routes to %v, want %s and %s", got, first, good)
			}
		})
	}
}

// TestAnEnvoyWithARejectedClusterStillStarts models Envoy's startup: until its workers start, a listener's init
// manager is the server's (source/common/listener_manager/listener_impl.cc, ListenerImpl::initManager), so a
// listener warming for its filter config (initial_fetch_timeout 0s) holds the initialization of the whole server
// (source/server/server.cc, InstanceImpl::onClusterManagerPrimaryInitializationComplete then the init manager):
// no listener of that Envoy would serve. A node's first config therefore goes at once, cut to the topics whose
// clusters the node accepted; later configs wait whole (the node routes by the one it has).
func TestAnEnvoyWithARejectedClusterStillStarts(t *testing.T) {
	s, _ := startModelStack(t, cache.Options{})
	testTopic(s, "p", 6, "b1")
	testTopic(s, "q", 6, "b2")
	good, bad := clusterOf(t, s, "p"), clusterOf(t, s, "q")
	c := openClient(t, s.addr, xdsModes[0], node("envoy-starting", "p", "q"))
	c.subscribe(translate.ClusterType)
	c.nack(c.next(translate.ClusterType, nil), "Error adding/updating cluster(s) "+bad+": Proto constraint validation failed")
	c.subscribe(translate.EndpointType, good)
	c.ack(c.next(translate.EndpointType, nil))
	c.subscribe(translate.ListenerType)
	c.ack(c.next(translate.ListenerType, nil))
	c.subscribe(translate.ExtensionType, translate.ExtensionConfigName)
	ecds := c.next(translate.ExtensionType, nil)
	if got := routedClusters(t, ecds); !slices.Equal(got, []string{good}) {
		t.Fatalf("the first config routes to %v, want only the accepted %s", got, good)
	}
	c.ack(ecds)

	// The next config that needs the rejected cluster waits whole.
	testTopic(s, "p", 6, "b2")
	c.none(translate.ExtensionType, "the config names "+bad+", which the client rejected", nil)
	// One that needs only accepted clusters goes.
	testTopic(s, "p", 6, "b1")
	testTopic(s, "q", 6, "b1")
	ecds = c.next(translate.ExtensionType, func(r xdsResponse) { c.ack(r) })
	if got := routedClusters(t, ecds); !slices.Equal(got, []string{good}) {
		t.Fatalf("the config routes to %v, want [%s]", got, good)
	}
}

// members is a broker set of one master per broker name, as testTopic writes it.
func members(brokers ...string) []routing.Member {
	var out []routing.Member
	for i, b := range brokers {
		out = append(out, routing.Member{Cluster: "TestCluster", BrokerName: b, Perm: 6, ReadQueueNums: 4, WriteQueueNums: 4,
			Addrs: []routing.BrokerAddr{{ID: 0, Addr: fmt.Sprintf("10.9.%d.1:10911", i)}}})
	}
	return out
}

// TestSotwADSNeverSendsAConfigBeforeItsClusters models Envoy on state-of-the-world ADS, ACKing every response at
// once and asking for the endpoints of every cluster it takes (source/extensions/config_subscription/grpc/
// grpc_mux_impl.cc, GrpcMuxImpl::onDiscoveryResponse ACKs each response; cluster_manager_impl.cc warms a cluster
// until its endpoints arrive). go-control-plane's SotW ADS loop sends whichever type it has ready, in random
// order, so a config sent as soon as its clusters were queued could overtake them (10 of 20 rounds before issue
// 15). Waiting for the client's ACK orders them: in every round the config naming a new cluster comes after the
// cluster and its endpoints.
func TestSotwADSNeverSendsAConfigBeforeItsClusters(t *testing.T) {
	s, _ := startModelStack(t, cache.Options{})
	testTopic(s, "order", 6, "r0")
	c := openClient(t, s.addr, xdsModes[1], node("sotw-order", "order"))
	var mu sync.Mutex
	var log []xdsResponse
	clusters := map[string]bool{}
	// envoy is the client's answer to every response: record it, ACK it, and after clusters ask for their
	// endpoints.
	envoy := func(r xdsResponse) {
		mu.Lock()
		log = append(log, r)
		mu.Unlock()
		c.ack(r)
		if r.typeURL == translate.ClusterType {
			var eds []string
			for name := range r.resources {
				clusters[name] = true
			}
			for name := range clusters {
				eds = append(eds, name)
			}
			slices.Sort(eds)
			c.subscribe(translate.EndpointType, eds...)
		}
	}
	c.subscribe(translate.ClusterType)
	c.subscribe(translate.ListenerType)
	c.subscribe(translate.ExtensionType, translate.ExtensionConfigName)
	envoy(c.next(translate.ExtensionType, envoy))
	for round := 1; round <= 20; round++ {
		testTopic(s, "order", 6, fmt.Sprintf("r%d", round))
		want := clusterOf(t, s, "order")
		for {
			r := c.next(translate.ExtensionType, envoy)
			envoy(r)
			if slices.Equal(routedClusters(t, r), []string{want}) {
				break
			}
		}
		mu.Lock()
		var order []string
		cds, eds := false, false
		for _, r := range log {
			order = append(order, r.typeURL[strings.LastIndex(r.typeURL, ".")+1:])
			_, has := r.resources[want]
			cds = cds || r.typeURL == translate.ClusterType && has
			eds = eds || r.typeURL == translate.EndpointType && has
		}
		log = nil
		mu.Unlock()
		if !cds || !eds {
			t.Fatalf("round %d: the config naming %s came before the cluster (%v) or its endpoints (%v); order %v", round, want, cds, eds, order)
		}
	}
}

// TestListenerWarmsUntilANewNodeGetsItsFilterConfig models Envoy's warming of a listener whose network filter is
// configured by ECDS (source/common/filter/config_discovery_impl.cc, FilterConfigSubscription: the listener's init
// target is ready at the first config, or when the config source's initial_fetch_timeout fires; after that
// source/common/listener_manager/listener_impl.cc, ListenerImpl::createNetworkFilterChain, closes every connection
// and counts network_extension_config_missing). A node whose topics are still being learned must never see its
// listener go active without a config: the listener waits for the config without a timeout, and the cache answers
// the node's ECDS subscription at once with what it knows, then with each topic learned.
func TestListenerWarmsUntilANewNodeGetsItsFilterConfig(t *testing.T) {
	s, _ := startModelStack(t, cache.Options{})
	c := openClient(t, s.addr, xdsModes[0], node("envoy-early", "learned-later"))
	c.subscribe(translate.ClusterType)
	c.subscribe(translate.ListenerType)
	lds := c.next(translate.ListenerType, func(r xdsResponse) { c.ack(r) })
	var l listenerv3.Listener
	if err := proto.Unmarshal(lds.resources[translate.ListenerName], &l); err != nil {
		t.Fatal(err)
	}
	timeout := l.GetFilterChains()[0].GetFilters()[0].GetConfigDiscovery().GetConfigSource().GetInitialFetchTimeout()
	if timeout == nil || timeout.AsDuration() != 0 {
		t.Fatalf("the listener's filter config source has initial_fetch_timeout %v: Envoy would activate it without a config", timeout)
	}
	c.ack(lds)
	c.subscribe(translate.ExtensionType, translate.ExtensionConfigName)
	ecds := c.next(translate.ExtensionType, func(r xdsResponse) { c.ack(r) })
	if got := routedClusters(t, ecds); len(got) != 0 {
		t.Fatalf("a config before any topic was learned routes to %v", got)
	}
	c.ack(ecds)

	testTopic(s, "learned-later", 6, "b1")
	cluster := clusterOf(t, s, "learned-later")
	envoy := func(r xdsResponse) {
		c.ack(r)
		if r.typeURL == translate.ClusterType && len(r.resources) > 0 {
			c.subscribe(translate.EndpointType, r.names()...)
		}
	}
	ecds = c.next(translate.ExtensionType, envoy)
	if got := routedClusters(t, ecds); !slices.Equal(got, []string{cluster}) {
		t.Fatalf("after the topic was learned the config routes to %v, want [%s]", got, cluster)
	}
}

// TestMissingExtensionNACKIsTheSidecarsProblem models what Envoy says when its build lacks the RocketMQ filter
// (the default image has no contrib extensions): Config::Utility::getAndCheckFactory (source/common/config/
// utility.h) fails the ECDS config with "Didn't find a registered implementation for ...". That is no fault of any
// TopicRoute: it must not reach their Rejected condition, and is shown as the sidecar's problem instead, in
// proxy-status, a metric and a log line naming the node and the extension.
func TestMissingExtensionNACKIsTheSidecarsProblem(t *testing.T) {
	var logs syncBuffer
	s, _ := startModelStack(t, cache.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	testTopic(s, "plain", 6, "b1")
	const envoyError = "Didn't find a registered implementation for 'rocketmq-proxy' with type URL: " +
		"'envoy.extensions.filters.network.rocketmq_proxy.v3.RocketmqProxy'"
	for _, n := range []struct{ id, err string }{{"envoy-no-contrib", envoyError}, {"envoy-bad-config", "route config invalid"}} {
		c := openClient(t, s.addr, xdsModes[0], node(n.id, "plain"))
		c.subscribe(translate.ExtensionType, translate.ExtensionConfigName)
		c.nack(c.next(translate.ExtensionType, nil), n.err)
	}
	waitFor(t, "both NACKs recorded", func() bool {
		return typeState(t, s, "envoy-no-contrib", translate.ExtensionType).State == cache.Nacked &&
			typeState(t, s, "envoy-bad-config", translate.ExtensionType).State == cache.Nacked
	})
	for _, r := range s.cache.Rejections() {
		if r.Node == "envoy-no-contrib" {
			t.Fatalf("a sidecar without the extension is blamed on the configuration: %+v", r)
		}
	}
	if rs := s.cache.Rejections(); len(rs) != 1 || rs[0].Node != "envoy-bad-config" {
		t.Fatalf("rejections %+v, want the bad config's only", rs)
	}
	st := typeState(t, s, "envoy-no-contrib", translate.ExtensionType)
	if st.MissingExtension != "envoy.extensions.filters.network.rocketmq_proxy.v3.RocketmqProxy" {
		t.Fatalf("proxy-status: missing extension %q", st.MissingExtension)
	}
	if other := typeState(t, s, "envoy-bad-config", translate.ExtensionType); other.MissingExtension != "" {
		t.Fatalf("a config's own fault taken for a missing extension: %+v", other)
	}
	if n := cacheMetric(t, s, "rocketpilot_xds_sidecars_missing_extension", map[string]string{"type": "extension_config"}); n != 1 {
		t.Fatalf("rocketpilot_xds_sidecars_missing_extension{type=extension_config} = %v, want 1", n)
	}
	line := logs.String()
	if !strings.Contains(line, "node=envoy-no-contrib") || !strings.Contains(line, "extension=envoy.extensions.filters.network.rocketmq_proxy.v3.RocketmqProxy") {
		t.Fatalf("no log line naming the node and the missing extension:\n%s", line)
	}
}

// syncBuffer collects a logger's output (testutil.LogBuffer).
type syncBuffer = testutil.LogBuffer

// cacheMetric is the sum of a family's series with the given labels, as the cache reports them.
func cacheMetric(t *testing.T, s *stack, family string, labels map[string]string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.cache)
	return promtest.Sum(promtest.Families(t, reg), family, labels)
}
