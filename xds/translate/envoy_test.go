package translate

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"testing"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/rocketpilot/rocketpilot/routing"
)

// envoyRequest is what Envoy's RocketMQ filter routes on: the topic and the pseudo-headers it sets (code on every
// request; broker_name and broker_id on an ack, from the record of the pop).
type envoyRequest struct {
	topic   string
	headers map[string]string
}

// envoyHandling is what Envoy's RocketMQ filter does with a request, by its code alone: the switch of
// ConnectionManager::dispatch (contrib/rocketmq_proxy/filters/network/source/conn_manager.cc).
type envoyHandling int

const (
	// envoyRouted: 10, 310 (onSendMessage), 50 (onPopMessage), 51 (onAckMessage): forwarded by the first route
	// that matches, or failed without one ("No route for current request").
	envoyRouted envoyHandling = iota
	// envoyRouteAnswer: 105 (onGetTopicRoute, ActiveMessage::onQueryTopicRoute): answered by the filter from the
	// hosts of the matching route's cluster; nothing is forwarded.
	envoyRouteAnswer
	// envoyAnsweredLocally: 34, 35, 38 (onHeartbeat, onUnregisterClient, onGetConsumerListByGroup): answered from
	// the connection's own state; no route is consulted.
	envoyAnsweredLocally
	// envoyNotSupported: every other code (the switch's default): SYSTEM_ERROR, "Request not supported"; no route
	// is consulted.
	envoyNotSupported
)

func envoyDispatch(code int32) envoyHandling {
	switch code {
	case 10, 310, 50, 51:
		return envoyRouted
	case 105:
		return envoyRouteAnswer
	case 34, 35, 38:
		return envoyAnsweredLocally
	default:
		return envoyNotSupported
	}
}

func (r envoyRequest) code(t *testing.T) int32 {
	t.Helper()
	c, err := strconv.ParseInt(r.headers[HeaderCode], 10, 32)
	if err != nil {
		t.Fatalf("request %v: code header: %v", r, err)
	}
	return int32(c)
}

// envoyHosts models what Envoy does with a routed request (10, 310, 50, 51) or a route query (105), from the same
// resources Envoy would hold: the first route of the table whose topic and headers match (route_matcher.cc,
// HeaderUtility::matchHeaders), then the hosts the subset load balancer may pick for that route's metadata_match
// (subset_lb.cc: a selector with exactly the criteria's keys and its fallback policy, the cluster's fallback policy
// otherwise). routed is false when no route matches, which the filter fails ("No route for current request"). A
// code the filter never routes is a test error: Envoy answers it before any route is looked at (envoyDispatch).
func envoyHosts(t *testing.T, routes []*rmqv3.Route, cluster *clusterv3.Cluster, cla *endpointv3.ClusterLoadAssignment,
	req envoyRequest) (hosts []string, routed bool) {
	t.Helper()
	return envoyHostsIn(t, routes, map[string]envoyCluster{cluster.GetName(): {cluster, cla}}, req)
}

// envoyCluster is a cluster and its endpoints, as Envoy holds them.
type envoyCluster struct {
	cluster *clusterv3.Cluster
	cla     *endpointv3.ClusterLoadAssignment
}

// clustersOf is every cluster a broker set becomes.
func clustersOf(set *routing.BrokerSet) map[string]envoyCluster {
	out := map[string]envoyCluster{ClusterName(set): {Cluster(set), LoadAssignment(set)}}
	if Weighted(set) {
		out[SendClusterName(set)] = envoyCluster{SendCluster(set), SendLoadAssignment(set)}
	}
	return out
}

// envoyHostsIn is envoyHosts over several clusters: the route picks one by name.
func envoyHostsIn(t *testing.T, routes []*rmqv3.Route, clusters map[string]envoyCluster, req envoyRequest) (hosts []string, routed bool) {
	t.Helper()
	if h := envoyDispatch(req.code(t)); h != envoyRouted && h != envoyRouteAnswer {
		t.Fatalf("code %d never reaches Envoy's routes: the filter answers it itself", req.code(t))
	}
	route := envoyRoute(t, routes, req)
	if route == nil {
		return nil, false
	}
	return envoyRouteHosts(t, route, clusters), true
}

// envoyRoute is the first route whose topic and headers match, nil if none does.
func envoyRoute(t *testing.T, routes []*rmqv3.Route, req envoyRequest) *rmqv3.Route {
	t.Helper()
	for _, r := range routes {
		if stringMatches(t, r.GetMatch().GetTopic(), req.topic) && headersMatch(t, r.GetMatch().GetHeaders(), req.headers) {
			return r
		}
	}
	return nil
}

// envoyRouteHosts is the hosts a route's cluster and metadata_match let the subset load balancer pick.
func envoyRouteHosts(t *testing.T, route *rmqv3.Route, clusters map[string]envoyCluster) (hosts []string) {
	t.Helper()
	ec, ok := clusters[route.GetRoute().GetCluster()]
	if !ok {
		t.Fatalf("route names cluster %q, which is not served", route.GetRoute().GetCluster())
	}
	cluster, cla := ec.cluster, ec.cla
	if cla.GetClusterName() != cluster.GetName() || cluster.GetEdsClusterConfig().GetServiceName() != cluster.GetName() {
		t.Fatalf("cluster %q has endpoints of %q", cluster.GetName(), cla.GetClusterName())
	}
	criteria := route.GetRoute().GetMetadataMatch().GetFilterMetadata()[LBNamespace].GetFields()
	all := func() []string {
		var out []string
		for _, loc := range cla.GetEndpoints() {
			for _, lb := range loc.GetLbEndpoints() {
				out = append(out, hostAddr(lb))
			}
		}
		return out
	}
	subsets := cluster.GetLbSubsetConfig()
	if len(criteria) == 0 {
		if subsets != nil && subsets.GetFallbackPolicy() != clusterv3.Cluster_LbSubsetConfig_ANY_ENDPOINT {
			t.Fatalf("a route without metadata_match gets no hosts under fallback %v", subsets.GetFallbackPolicy())
		}
		return all()
	}
	keys := make([]string, 0, len(criteria))
	for k := range criteria {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var selector *clusterv3.Cluster_LbSubsetConfig_LbSubsetSelector
	for _, s := range subsets.GetSubsetSelectors() {
		if sk := slices.Sorted(slices.Values(s.GetKeys())); slices.Equal(sk, keys) {
			selector = s
		}
	}
	if selector == nil {
		t.Fatalf("no subset selector has the keys %v of a route's metadata_match: every endpoint would be used", keys)
	}
	for _, loc := range cla.GetEndpoints() {
		for _, lb := range loc.GetLbEndpoints() {
			md := lb.GetMetadata().GetFilterMetadata()[LBNamespace].GetFields()
			ok := true
			for k, want := range criteria {
				if !proto.Equal(md[k], want) { // Envoy compares values with their types: "0" is not 0
					ok = false
				}
			}
			if ok {
				hosts = append(hosts, hostAddr(lb))
			}
		}
	}
	if len(hosts) == 0 && selector.GetFallbackPolicy() != clusterv3.Cluster_LbSubsetConfig_LbSubsetSelector_NO_FALLBACK {
		t.Fatalf("an empty subset %v falls back (%v) to other brokers", criteria, selector.GetFallbackPolicy())
	}
	return hosts
}

func hostAddr(lb *endpointv3.LbEndpoint) string {
	sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
	return net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
}

func stringMatches(t *testing.T, m *matcherv3.StringMatcher, s string) bool {
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return s == p.Exact
	case *matcherv3.StringMatcher_Prefix:
		return len(s) >= len(p.Prefix) && s[:len(p.Prefix)] == p.Prefix
	case *matcherv3.StringMatcher_SafeRegex:
		return regexp.MustCompile("^(?:" + p.SafeRegex.GetRegex() + ")$").MatchString(s) // RE2, whole value
	default:
		t.Fatalf("string matcher %T is not modelled", p)
		return false
	}
}

// headersMatch: every matcher must match; a missing header never matches, unless the matcher is inverted.
func headersMatch(t *testing.T, matchers []*routev3.HeaderMatcher, headers map[string]string) bool {
	for _, h := range matchers {
		v, present := headers[h.GetName()]
		ok := present && stringMatches(t, h.GetStringMatch(), v)
		if h.GetInvertMatch() {
			ok = !ok
		}
		if !ok {
			return false
		}
	}
	return true
}

func code(c int32, kv ...string) envoyRequest {
	h := map[string]string{HeaderCode: strconv.Itoa(int(c))}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = kv[i+1]
	}
	return envoyRequest{topic: "TopicTest", headers: h}
}

// TestEnvoyRouting checks, request kind by request kind, what Envoy's filter does with a request for TopicTest
// (broker-a read-write, broker-b read-only, masters and slaves) and for a topic whose only group lost its master.
// Only 10, 310, 50 and 51 are routed to brokers and 105 is answered from its route's cluster (envoyDispatch); a
// request with any other code is answered by the filter itself and reaches no route, whatever the route table
// matches.
func TestEnvoyRouting(t *testing.T) {
	var handled []int32
	for c := int32(0); c <= 300000; c++ { // past every RocketMQ request code, the 2000xx family included
		if envoyDispatch(c) != envoyNotSupported {
			handled = append(handled, c)
		}
	}
	if !slices.Equal(handled, EnvoyDispatchedCodes) {
		t.Fatalf("the model of ConnectionManager::dispatch handles %v, EnvoyDispatchedCodes is %v", handled, EnvoyDispatchedCodes)
	}

	_, topics := model(t)
	set := topics[0].BrokerSet
	routes, cluster, cla := Routes(topics[0]), Cluster(set), LoadAssignment(set)
	clusters := map[string]envoyCluster{cluster.GetName(): {cluster, cla}}
	const (
		aMaster, aSlave = "10.0.0.1:10911", "10.0.0.2:10911"
		bMaster, bSlave = "10.0.1.1:10911", "10.0.1.2:10911"
	)
	every := []string{aMaster, aSlave, bMaster, bSlave}
	cases := []struct {
		name     string
		req      envoyRequest
		handling envoyHandling
		want     []string // routed and route answer: the hosts, nil for no route
	}{
		{"send to the writable master", code(10), envoyRouted, []string{aMaster}},
		{"send v2", code(310), envoyRouted, []string{aMaster}},
		{"Envoy's pop to each readable group's carrier", code(50), envoyRouted, []string{aMaster, bMaster}},
		{"ack back to the broker that popped", code(51, HeaderBrokerName, "broker-b", HeaderBrokerID, "0"), envoyRouted, []string{bMaster}},
		{"ack back to broker-a", code(51, HeaderBrokerName, "broker-a", HeaderBrokerID, "0"), envoyRouted, []string{aMaster}},
		{"ack naming a slave", code(51, HeaderBrokerName, "broker-a", HeaderBrokerID, "1"), envoyRouted, nil},
		{"ack naming an unknown broker", code(51, HeaderBrokerName, "broker-x", HeaderBrokerID, "0"), envoyRouted, nil},
		{"ack without a pop record", code(51), envoyRouted, nil},
		{"another topic", envoyRequest{topic: "OtherTopic", headers: map[string]string{HeaderCode: "10"}}, envoyRouted, nil},
		{"route query answered from the catch-all's cluster", code(105), envoyRouteAnswer, every},
		{"heartbeat", code(34), envoyAnsweredLocally, nil},
		{"unregister", code(35), envoyAnsweredLocally, nil},
		{"consumer list", code(38), envoyAnsweredLocally, nil},
		{"pull", code(11), envoyNotSupported, nil},
		{"batch send", code(320), envoyNotSupported, nil},
		{"Apache pop", code(200050), envoyNotSupported, nil},
		{"Apache ack", code(200051, HeaderBrokerName, "broker-a", HeaderBrokerID, "0"), envoyNotSupported, nil},
		{"change invisible time", code(200053, HeaderBrokerName, "broker-a", HeaderBrokerID, "0"), envoyNotSupported, nil},
		{"offset commit", code(15), envoyNotSupported, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if h := envoyDispatch(c.req.code(t)); h != c.handling {
				t.Fatalf("Envoy's filter handles code %d as %d, want %d", c.req.code(t), h, c.handling)
			}
			if c.handling == envoyAnsweredLocally || c.handling == envoyNotSupported {
				return // answered by the filter before any route is looked at: no broker is reached
			}
			if c.handling == envoyRouteAnswer {
				if r := envoyRoute(t, routes, c.req); r != routes[len(routes)-1] {
					t.Fatalf("a route query matches %v, want the catch-all route", r)
				}
			}
			got, routed := envoyHostsIn(t, routes, clusters, c.req)
			if c.want == nil {
				if routed {
					t.Fatalf("routed to %v, want no route", got)
				}
				return
			}
			if !routed {
				t.Fatalf("no route, want %v", c.want)
			}
			slices.Sort(got)
			if !slices.Equal(got, c.want) {
				t.Fatalf("hosts %v, want %v", got, c.want)
			}
		})
	}

	// broker-c lost its master: nothing may be sent, pops go to the slave carrying the queues, acks come back to it.
	orphan := topics[1]
	routes, cluster, cla = Routes(orphan), Cluster(orphan.BrokerSet), LoadAssignment(orphan.BrokerSet)
	at := func(req envoyRequest) envoyRequest { req.topic = orphan.Name; return req }
	for _, c := range []struct {
		req  envoyRequest
		want string
	}{
		{at(code(10)), ""},
		{at(code(50)), "10.0.2.2:10911"},
		{at(code(51, HeaderBrokerName, "broker-c", HeaderBrokerID, "1")), "10.0.2.2:10911"},
	} {
		got, routed := envoyHosts(t, routes, cluster, cla, c.req)
		if !routed || fmt.Sprint(got) != fmt.Sprint(slices.DeleteFunc([]string{c.want}, func(s string) bool { return s == "" })) {
			t.Fatalf("orphaned group, code %s: hosts %v (routed %v), want %q", c.req.headers[HeaderCode], got, routed, c.want)
		}
	}
}

// TestEnvoyReadsEveryHost checks each endpoint against how Envoy's filter reads it (active_message.cc):
// broker_name and cluster_name are read without a presence check, so they must be strings on every host; the
// numbers are read only when present, so those left out must be exactly the zero ones.
func TestEnvoyReadsEveryHost(t *testing.T) {
	_, topics := model(t)
	for _, topic := range topics {
		for _, m := range topic.BrokerSet.Members {
			for _, a := range m.Addrs {
				md := endpointMetadata(&m, a)
				f := md.GetFilterMetadata()[FilterNamespace].GetFields()
				for _, k := range []string{KeyBrokerName, KeyClusterName} {
					if _, ok := f[k].GetKind().(*structpb.Value_StringValue); !ok {
						t.Fatalf("%s/%d: %s is %v, Envoy reads it unchecked as a string", m.BrokerName, a.ID, k, f[k])
					}
				}
				isCarrier := a.ID == carrier(&m)
				want := map[string]int64{KeyBrokerID: a.ID}
				if isCarrier {
					want[KeyPerm], want[KeyReadQueueNum], want[KeyWriteQueueNum] = int64(m.Perm), int64(m.ReadQueueNums), int64(m.WriteQueueNums)
				}
				for k, n := range want {
					v, present := f[k]
					if present != (n != 0) || int64(v.GetNumberValue()) != n {
						t.Fatalf("%s/%d: %s = %v (present %v), want %d, left out only when zero", m.BrokerName, a.ID, k, v, present, n)
					}
				}
				if _, hasSubset := md.GetFilterMetadata()[LBNamespace]; hasSubset != isCarrier {
					t.Fatalf("%s/%d: subset keys %v, want them on the carrier only", m.BrokerName, a.ID, hasSubset)
				}
			}
		}
	}
}

// TestEnvoyRoutingUnderPolicy: a policy that weighs sends 80/20 and takes broker-b out of consume. Sends go to
// the send cluster, whose masters carry the weights; pops reach broker-a only, with no weight on the main
// cluster (in Envoy a host has one weight for every subset: weights there would skew consumption too); an ack of
// a message popped from broker-b before still goes back to it.
func TestEnvoyRoutingUnderPolicy(t *testing.T) {
	tab, _ := model(t)
	tab.SetPolicies([]routing.Policy{{Name: "ns/p", Match: routing.TopicMatch{Exact: []string{"TopicTest"}},
		Send: []routing.Backend{
			{BrokerNames: []string{"broker-a"}, Weight: 80, Weighted: true},
			{BrokerNames: []string{"broker-b"}, Weight: 20, Weighted: true}},
		Consume: []routing.Backend{{BrokerNames: []string{"broker-a"}}},
	}})
	// Both groups read-write at the NameServer.
	tab.Apply("ns", routing.Update{Topic: "TopicTest", Route: &routing.Route{Members: []routing.Member{
		{Cluster: "DefaultCluster", BrokerName: "broker-a", Perm: 6, ReadQueueNums: 4, WriteQueueNums: 4,
			Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.0.1:10911"}, {ID: 1, Addr: "10.0.0.2:10911"}}},
		{Cluster: "DefaultCluster", BrokerName: "broker-b", Perm: 6, ReadQueueNums: 8, WriteQueueNums: 8,
			Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.1.1:10911"}, {ID: 1, Addr: "10.0.1.2:10911"}}},
	}}})
	topic := tab.Topic("TopicTest")
	routes, clusters := Routes(topic), clustersOf(topic.BrokerSet)
	if len(clusters) != 2 {
		t.Fatalf("a weighted set becomes %d clusters, want the cluster and its send cluster", len(clusters))
	}
	if got, _ := envoyHostsIn(t, routes, clusters, code(50)); !slices.Equal(got, []string{"10.0.0.1:10911"}) {
		t.Fatalf("pops go to %v, want broker-a's master only", got)
	}
	if got, ok := envoyHostsIn(t, routes, clusters, code(51, HeaderBrokerName, "broker-b", HeaderBrokerID, "0")); !ok ||
		!slices.Equal(got, []string{"10.0.1.1:10911"}) {
		t.Fatalf("an ack of a pop from broker-b goes to %v (routed %v), want broker-b's master", got, ok)
	}
	send, _ := envoyHostsIn(t, routes, clusters, code(10))
	slices.Sort(send)
	if !slices.Equal(send, []string{"10.0.0.1:10911", "10.0.1.1:10911"}) {
		t.Fatalf("sends go to %v", send)
	}
	weights := func(cla *endpointv3.ClusterLoadAssignment) map[string]uint32 {
		w := map[string]uint32{}
		for _, loc := range cla.GetEndpoints() {
			for _, lb := range loc.GetLbEndpoints() {
				w[hostAddr(lb)] = lb.GetLoadBalancingWeight().GetValue()
			}
		}
		return w
	}
	sw := weights(clusters[SendClusterName(topic.BrokerSet)].cla)
	if a, b := sw["10.0.0.1:10911"], sw["10.0.1.1:10911"]; a != 4*b || b == 0 || len(sw) != 2 {
		t.Fatalf("send cluster weights %v: want the two masters 80:20", sw)
	}
	for addr, w := range weights(clusters[ClusterName(topic.BrokerSet)].cla) {
		if w != 0 {
			t.Fatalf("the main cluster weighs %s %d: consumption would follow the send weights", addr, w)
		}
	}
	// The Go sidecar's view: broker-b is write-only, so a client reading the route does not consume from it.
	view := ClientTopicRoute(clusters[ClusterName(topic.BrokerSet)].cla)
	for _, q := range view.QueueDatas {
		if q.BrokerName == "broker-b" && q.Perm != routing.PermWrite {
			t.Fatalf("broker-b perm %d in the client's route, want write-only", q.Perm)
		}
	}
}

// TestEnvoyAckRuleRoutesAcksToAWriteOnlyGroup: with broker-b write-only at the NameServer, an ack for it has no
// route, until a policy's ack rule names it.
func TestEnvoyAckRuleRoutesAcksToAWriteOnlyGroup(t *testing.T) {
	tab, _ := model(t)
	writeOnly := []routing.Member{
		{Cluster: "DefaultCluster", BrokerName: "broker-a", Perm: 6, ReadQueueNums: 4, WriteQueueNums: 4,
			Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.0.1:10911"}}},
		{Cluster: "DefaultCluster", BrokerName: "broker-b", Perm: routing.PermWrite, ReadQueueNums: 8, WriteQueueNums: 8,
			Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.1.1:10911"}}},
	}
	tab.Apply("ns", routing.Update{Topic: "TopicTest", Route: &routing.Route{Members: writeOnly}})
	ack := code(51, HeaderBrokerName, "broker-b", HeaderBrokerID, "0")
	hosts := func() ([]string, bool) {
		topic := tab.Topic("TopicTest")
		return envoyHosts(t, Routes(topic), Cluster(topic.BrokerSet), LoadAssignment(topic.BrokerSet), ack)
	}
	if got, routed := hosts(); routed {
		t.Fatalf("an ack for a write-only group routed to %v", got)
	}
	tab.SetPolicies([]routing.Policy{{Name: "ns/acks", Match: routing.TopicMatch{Exact: []string{"TopicTest"}},
		Ack: []routing.Backend{{BrokerNames: []string{"broker-b"}}}}})
	if got, routed := hosts(); !routed || !slices.Equal(got, []string{"10.0.1.1:10911"}) {
		t.Fatalf("under the ack rule: %v (routed %v)", got, routed)
	}
	if got, _ := envoyHosts(t, Routes(tab.Topic("TopicTest")), Cluster(tab.Topic("TopicTest").BrokerSet),
		LoadAssignment(tab.Topic("TopicTest").BrokerSet), code(50)); !slices.Equal(got, []string{"10.0.0.1:10911"}) {
		t.Fatalf("pops go to %v, want broker-a only: an ack rule does not make a group readable", got)
	}
}
