package embedded

import (
	"bytes"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/rocketpilot/rocketpilot/remoting"
)

const notExistRemark = "No topic route info in name server for the topic: %s\n" +
	"See https://rocketmq.apache.org/docs/bestPractice/06FAQ for further details."

func notExist(topic string) string { return strings.Replace(notExistRemark, "%s", topic, 1) }

func demoBroker(name string) remoting.BrokerData {
	for _, b := range DemoBrokers() {
		if b.Name == name {
			return remoting.BrokerData{Cluster: b.Cluster, BrokerName: b.Name, ZoneName: b.Zone, BrokerAddrs: b.Addrs}
		}
	}
	panic("no demo broker " + name)
}

func TestRouteInfoByTopic(t *testing.T) {
	s := demo(t)
	c := dial(t, s.Addr())
	want := remoting.TopicRouteData{
		QueueDatas:  []remoting.QueueData{rw("broker-a", 4), rw("broker-b", 4)},
		BrokerDatas: []remoting.BrokerData{demoBroker("broker-a"), demoBroker("broker-b")},
	}
	for _, tc := range []struct {
		name     string
		version  int32
		ext      map[string]string
		standard bool
	}{
		{"client-go version", remoting.VersionClientGo, nil, false},
		{"version 0", 0, nil, false},
		{"version 400", remoting.VersionStandardJSON - 1, nil, false},
		{"version 401", remoting.VersionStandardJSON, nil, true},
		{"version 500", 500, nil, true},
		{"acceptStandardJsonOnly", remoting.VersionClientGo, map[string]string{"acceptStandardJsonOnly": "true"}, true},
		{"acceptStandardJsonOnly upper case", 0, map[string]string{"acceptStandardJsonOnly": "TRUE"}, true},
		{"acceptStandardJsonOnly false", 0, map[string]string{"acceptStandardJsonOnly": "false"}, false},
		{"acceptStandardJsonOnly junk", 0, map[string]string{"acceptStandardJsonOnly": "yes"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := routeReq(DemoTopic)
			r.Version = tc.version
			for k, v := range tc.ext {
				r.ExtFields[k] = v
			}
			resp := c.call(r)
			wantCode(t, resp, remoting.Success, "")
			if resp.HeaderType != remoting.SerializeJSON || len(resp.ExtFields) != 0 {
				t.Fatalf("header: %v", resp)
			}
			if wantBody := want.Encode(tc.standard); !bytes.Equal(resp.Body, wantBody) {
				t.Fatalf("body\n got %s\nwant %s", resp.Body, wantBody)
			}
			legacy := bytes.Contains(resp.Body, []byte(`{0:"127.0.0.1:10911"`))
			if legacy == tc.standard {
				t.Fatalf("standard=%v but body is %s", tc.standard, resp.Body)
			}
			got, err := remoting.DecodeTopicRouteData(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.QueueDatas, want.QueueDatas) || !reflect.DeepEqual(got.BrokerDatas, want.BrokerDatas) ||
				len(got.FilterServerTable) != 0 || !bytes.Contains(resp.Body, []byte(`"filterServerTable":{}`)) {
				t.Fatalf("decoded %+v", got)
			}
		})
	}
}

func TestRouteInfoErrors(t *testing.T) {
	s := demo(t)
	c := dial(t, s.Addr())

	wantCode(t, c.call(routeReq("NoSuchTopic")), remoting.TopicNotExist, notExist("NoSuchTopic"))
	wantCode(t, c.call(routeReq("")), remoting.TopicNotExist, notExist(""))

	// A topic whose only group is not in the broker table has no route, although 206 lists it.
	s.SetTopic("orphan", rw("broker-x", 4))
	wantCode(t, c.call(routeReq("orphan")), remoting.TopicNotExist, notExist("orphan"))
	if !slices.Contains(s.Topics(), "orphan") {
		t.Fatal("orphan topic not listed")
	}

	// With one registered group the route has all queue data but only the registered group's broker data.
	s.SetTopic("half", rw("broker-a", 2), rw("broker-x", 2))
	resp := c.call(routeReq("half"))
	wantCode(t, resp, remoting.Success, "")
	got, err := remoting.DecodeTopicRouteData(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.QueueDatas) != 2 || len(got.BrokerDatas) != 1 || got.BrokerDatas[0].BrokerName != "broker-a" {
		t.Fatalf("half route: %+v", got)
	}

	// The custom header field is required: Java's header decoding throws and the answer is SYSTEM_ERROR.
	resp = c.call(req(remoting.GetRouteInfoByTopic, nil))
	wantCode(t, resp, remoting.SystemError,
		"org.apache.rocketmq.remoting.exception.RemotingCommandException: the custom field <topic> is null")
}

func TestBrokerClusterInfo(t *testing.T) {
	s := demo(t)
	c := dial(t, s.Addr())
	r := req(remoting.GetBrokerClusterInfo, nil)
	r.Version = remoting.VersionStandardJSON // 106 is legacy fastjson whatever the version
	resp := c.call(r)
	wantCode(t, resp, remoting.Success, "")
	if !bytes.Contains(resp.Body, []byte(`"brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.2:10921"}`)) {
		t.Fatalf("body not legacy: %s", resp.Body)
	}
	ci, err := remoting.DecodeClusterInfo(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	want := &remoting.ClusterInfo{
		BrokerAddrTable: map[string]remoting.BrokerData{},
		ClusterAddrTable: map[string][]string{
			DemoCluster:  {"broker-a", "broker-b", "broker-c"},
			DemoClusterB: {"broker-d"},
		},
	}
	for _, b := range DemoBrokers() {
		want.BrokerAddrTable[b.Name] = demoBroker(b.Name)
	}
	if !reflect.DeepEqual(ci, want) {
		t.Fatalf("cluster info\n got %+v\nwant %+v", ci, want)
	}
	if !reflect.DeepEqual(s.ClusterInfo(), want) {
		t.Fatalf("ClusterInfo() = %+v", s.ClusterInfo())
	}
	if !bytes.Equal(resp.Body, want.Encode()) {
		t.Fatalf("body differs from the remoting encoding")
	}
}

func TestAllTopicList(t *testing.T) {
	s := demo(t)
	c := dial(t, s.Addr())
	resp := c.call(req(remoting.GetAllTopicListFromNameServer, nil))
	wantCode(t, resp, remoting.Success, "")
	list, err := remoting.DecodeTopicList(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(list.TopicList, s.Topics()) || !slices.IsSorted(list.TopicList) || len(list.TopicList) != s.TopicCount() {
		t.Fatalf("topic list %v", list.TopicList)
	}
	if !bytes.HasPrefix(resp.Body, []byte(`{"topicList":["TopicTest","demo-audit-001",`)) {
		t.Fatalf("body %.80s", resp.Body)
	}

	// The list follows changes.
	s.SetTopic("aaa-new", rw("broker-a", 1))
	list, _ = remoting.DecodeTopicList(c.call(req(remoting.GetAllTopicListFromNameServer, nil)).Body)
	if list.TopicList[0] != "TopicTest" || !slices.Contains(list.TopicList, "aaa-new") {
		t.Fatalf("new topic missing: %v", list.TopicList[:3])
	}
	s.RemoveTopic("aaa-new")
	list, _ = remoting.DecodeTopicList(c.call(req(remoting.GetAllTopicListFromNameServer, nil)).Body)
	if slices.Contains(list.TopicList, "aaa-new") {
		t.Fatal("removed topic still listed")
	}

	s.SetAllTopicListEnabled(false)
	resp = c.call(req(remoting.GetAllTopicListFromNameServer, nil))
	wantCode(t, resp, remoting.SystemError, "disable")
	if resp.Body != nil {
		t.Fatalf("disabled answer has a body: %s", resp.Body)
	}
	s.SetAllTopicListEnabled(true)
	wantCode(t, c.call(req(remoting.GetAllTopicListFromNameServer, nil)), remoting.Success, "")
}

func TestTopicsByCluster(t *testing.T) {
	s := demo(t)
	c := dial(t, s.Addr())
	byCluster := func(cluster string) []string {
		t.Helper()
		resp := c.call(req(remoting.GetTopicsByCluster, map[string]string{"cluster": cluster}))
		wantCode(t, resp, remoting.Success, "")
		list, err := remoting.DecodeTopicList(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return list.TopicList
	}
	b := byCluster(DemoClusterB)
	var want []string
	for i := 1; i <= 30; i++ {
		want = append(want, "demo-inventory-"+pad3(i))
	}
	for i := 1; i <= 20; i++ {
		want = append(want, "demo-audit-"+pad3(i))
	}
	slices.Sort(want)
	if !reflect.DeepEqual(b, want) {
		t.Fatalf("ClusterB topics %v", b)
	}
	// Every topic of the demo has queue data in DefaultCluster except the inventory topics on broker-d only.
	if got := byCluster(DemoCluster); len(got) != s.TopicCount()-20 || slices.Contains(got, "demo-inventory-001") ||
		!slices.Contains(got, "demo-inventory-003") || !slices.Contains(got, DemoTopic) || !slices.IsSorted(got) {
		t.Fatalf("DefaultCluster topics (%d) %v", len(got), got)
	}
	if got := byCluster("NoSuchCluster"); len(got) != 0 {
		t.Fatalf("unknown cluster: %v", got)
	}

	wantCode(t, c.call(req(remoting.GetTopicsByCluster, nil)), remoting.SystemError,
		"org.apache.rocketmq.remoting.exception.RemotingCommandException: the custom field <cluster> is null")

	s.SetTopicListEnabled(false)
	wantCode(t, c.call(req(remoting.GetTopicsByCluster, map[string]string{"cluster": DemoCluster})), remoting.SystemError, "disable")
	wantCode(t, c.call(req(remoting.GetAllTopicListFromNameServer, nil)), remoting.Success, "") // 206 has its own switch
	s.SetTopicListEnabled(true)
	if len(byCluster(DemoClusterB)) != 50 {
		t.Fatal("224 not re-enabled")
	}
}

func pad3(i int) string {
	return string([]byte{byte('0' + i/100), byte('0' + i/10%10), byte('0' + i%10)})
}

func TestKVConfig(t *testing.T) {
	s := demo(t)
	s.SetKV("ns", "k1", "v1")
	s.SetKV("ns", "k2", "")
	c := dial(t, s.Addr())

	resp := c.call(req(remoting.GetKVConfig, map[string]string{"namespace": NamespaceOrderTopicConfig, "key": "demo-orders-001"}))
	wantCode(t, resp, remoting.Success, "")
	if !reflect.DeepEqual(resp.ExtFields, map[string]string{"value": "broker-a:8;broker-b:8"}) || resp.Body != nil {
		t.Fatalf("101 answer %v", resp)
	}
	resp = c.call(req(remoting.GetKVConfig, map[string]string{"namespace": "ns", "key": "k2"}))
	wantCode(t, resp, remoting.Success, "")
	if v, ok := resp.ExtFields["value"]; !ok || v != "" {
		t.Fatalf("empty value: %v", resp)
	}
	wantCode(t, c.call(req(remoting.GetKVConfig, map[string]string{"namespace": "ns", "key": "nope"})),
		remoting.QueryNotFound, "No config item, Namespace: ns Key: nope")
	wantCode(t, c.call(req(remoting.GetKVConfig, map[string]string{"namespace": "none", "key": "k1"})),
		remoting.QueryNotFound, "No config item, Namespace: none Key: k1")
	wantCode(t, c.call(req(remoting.GetKVConfig, map[string]string{"namespace": "ns"})), remoting.SystemError,
		"org.apache.rocketmq.remoting.exception.RemotingCommandException: the custom field <key> is null")

	resp = c.call(req(remoting.GetKVListByNamespace, map[string]string{"namespace": "ns"}))
	wantCode(t, resp, remoting.Success, "")
	if string(resp.Body) != `{"table":{"k1":"v1","k2":""}}` {
		t.Fatalf("219 body %s", resp.Body)
	}
	tbl, err := remoting.DecodeKVTable(resp.Body)
	if err != nil || !reflect.DeepEqual(tbl.Table, map[string]string{"k1": "v1", "k2": ""}) {
		t.Fatalf("219 table %v %v", tbl, err)
	}
	wantCode(t, c.call(req(remoting.GetKVListByNamespace, map[string]string{"namespace": "none"})),
		remoting.QueryNotFound, "No config item, Namespace: none")

	// As in Java, deleting the last key leaves an empty namespace behind.
	s.DeleteKV("ns", "k1")
	s.DeleteKV("ns", "k2")
	resp = c.call(req(remoting.GetKVListByNamespace, map[string]string{"namespace": "ns"}))
	wantCode(t, resp, remoting.Success, "")
	if string(resp.Body) != `{"table":{}}` {
		t.Fatalf("219 body after deletes %s", resp.Body)
	}
}

func TestOrderTopicConf(t *testing.T) {
	s := start(t, Options{OrderMessageEnable: true})
	LoadDemo(s)
	c := dial(t, s.Addr())
	got, err := remoting.DecodeTopicRouteData(c.call(routeReq("demo-orders-001")).Body)
	if err != nil || got.OrderTopicConf != "broker-a:8;broker-b:8" {
		t.Fatalf("orderTopicConf %q %v", got.OrderTopicConf, err)
	}
	got, _ = remoting.DecodeTopicRouteData(c.call(routeReq("demo-orders-002")).Body)
	if got.OrderTopicConf != "" {
		t.Fatalf("orderTopicConf of an unordered topic: %q", got.OrderTopicConf)
	}
	// Off by default, as in Java.
	d := demo(t)
	got, _ = remoting.DecodeTopicRouteData(dial(t, d.Addr()).call(routeReq("demo-orders-001")).Body)
	if got.OrderTopicConf != "" {
		t.Fatalf("orderTopicConf without OrderMessageEnable: %q", got.OrderTopicConf)
	}
}

func TestUnsupportedCodes(t *testing.T) {
	s := demo(t)
	c := dial(t, s.Addr())
	for _, code := range []int32{999, 0, -5, remoting.UpdateNamesrvConfig, remoting.DeleteTopicInNameSrv, remoting.PutKVConfig,
		remoting.QueryDataVersion, 200050} {
		wantCode(t, c.call(req(code, nil)), remoting.RequestCodeNotSupported, " request type "+itoa(code)+" not supported")
	}
	if s.RequestCount(remoting.UpdateNamesrvConfig) != 1 {
		t.Fatalf("318 count %d", s.RequestCount(remoting.UpdateNamesrvConfig))
	}
	// Write codes change nothing.
	if s.TopicCount() != 121 {
		t.Fatalf("topic count %d", s.TopicCount())
	}
}

func itoa(n int32) string {
	if n < 0 {
		return "-" + itoa(-n)
	}
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

func TestBinaryHeaderResponses(t *testing.T) {
	s := start(t, Options{HeaderType: remoting.SerializeRocketMQ, Version: 453})
	LoadDemo(s)
	c := dial(t, s.Addr())
	// A JSON request gets a binary answer: the server's serialization, not the request's.
	resp := c.call(routeReq(DemoTopic))
	if resp.HeaderType != remoting.SerializeRocketMQ || resp.Code != remoting.Success || resp.Version != 453 {
		t.Fatalf("response %v", resp)
	}
	if _, err := remoting.DecodeTopicRouteData(resp.Body); err != nil {
		t.Fatal(err)
	}
	resp = c.call(req(remoting.GetKVConfig, map[string]string{"namespace": NamespaceOrderTopicConfig, "key": "demo-orders-001"}))
	if resp.HeaderType != remoting.SerializeRocketMQ || resp.ExtFields["value"] != "broker-a:8;broker-b:8" {
		t.Fatalf("101 response %v", resp)
	}
	resp = c.call(routeReq("nope"))
	if resp.HeaderType != remoting.SerializeRocketMQ {
		t.Fatalf("error response %v", resp)
	}
	wantCode(t, resp, remoting.TopicNotExist, notExist("nope"))

	// And the other way round: a binary request to a JSON server gets a JSON answer.
	j := demo(t)
	r := routeReq(DemoTopic)
	r.HeaderType = remoting.SerializeRocketMQ
	resp = dial(t, j.Addr()).call(r)
	if resp.HeaderType != remoting.SerializeJSON || resp.Code != remoting.Success {
		t.Fatalf("response %v", resp)
	}
}

func TestOnewayGetsNoResponse(t *testing.T) {
	s := demo(t)
	c := dial(t, s.Addr())
	oneway := routeReq(DemoTopic)
	oneway.Flag = remoting.FlagOneway
	c.send(oneway)
	// A frame flagged as a response is not a request: ignored, not counted.
	stray := routeReq(DemoTopic)
	stray.Flag = remoting.FlagResponse
	c.send(stray)
	resp := c.call(req(remoting.GetBrokerClusterInfo, nil)) // call checks the opaque is this request's
	wantCode(t, resp, remoting.Success, "")
	if n := s.RequestCount(remoting.GetRouteInfoByTopic); n != 1 {
		t.Fatalf("105 count %d, want 1 (the one-way request)", n)
	}
}

func TestRequestCounts(t *testing.T) {
	s := demo(t)
	c := dial(t, s.Addr())
	d := dial(t, s.Addr())
	for range 3 {
		c.call(routeReq(DemoTopic))
	}
	d.call(routeReq("nope"))
	c.call(req(remoting.GetAllTopicListFromNameServer, nil))
	for code, want := range map[int32]int64{
		remoting.GetRouteInfoByTopic:           4,
		remoting.GetAllTopicListFromNameServer: 1,
		remoting.GetBrokerClusterInfo:          0,
		remoting.UpdateNamesrvConfig:           0,
	} {
		if got := s.RequestCount(code); got != want {
			t.Errorf("count of %d = %d, want %d", code, got, want)
		}
	}
}
