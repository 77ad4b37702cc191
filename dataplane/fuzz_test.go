package dataplane

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/internal/testutil"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/simbroker"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// staticRoutes serves one route for every topic.
type staticRoutes struct{ r *sidecar.Route }

func (s staticRoutes) Route(context.Context, string) (*sidecar.Route, error) { return s.r, nil }

func (s staticRoutes) Watch(string, func(*remoting.TopicRouteData, error)) func() { return func() {} }

// FuzzServeClient writes arbitrary bytes to a broker group's port, seeded with the requests the proxy reads fields
// of (sends, whose topic and queue it reads and may rewrite; Pop acks, whose receipt handle or body names a
// group) and answers of pushed requests: the proxy neither crashes nor stops serving, and a fresh connection
// is still proxied to the broker.
func FuzzServeClient(f *testing.F) {
	b := simbroker.New(simbroker.Options{Cluster: "c", Name: "broker-a", Topics: []remoting.TopicConfig{{TopicName: "T",
		ReadQueueNums: 2, WriteQueueNums: 2, Perm: remoting.PermRead | remoting.PermWrite}}})
	if err := b.Start(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { b.Close() })
	data := &remoting.TopicRouteData{
		QueueDatas:  []remoting.QueueData{{BrokerName: "broker-a", ReadQueueNums: 2, WriteQueueNums: 2, Perm: 6}, {BrokerName: "broker-b", ReadQueueNums: 2, WriteQueueNums: 2, Perm: 6}},
		BrokerDatas: []remoting.BrokerData{{Cluster: "c", BrokerName: "broker-a", BrokerAddrs: map[int64]string{0: b.Addr()}}, {Cluster: "c", BrokerName: "broker-b", BrokerAddrs: map[int64]string{0: b.Addr()}}},
	}
	routes := staticRoutes{&sidecar.Route{Topic: "T", Data: data, Send: []translate.Target{
		{BrokerName: "broker-a", Addr: b.Addr(), Weight: 3}, {BrokerName: "broker-b", Addr: b.Addr(), Weight: 1}}}}
	p := New(Options{Listen: "127.0.0.1:0", Routes: routes, MaxFrameSize: 1 << 16})
	if err := p.Start(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { p.Close() })
	if _, err := p.learn(data); err != nil {
		f.Fatal(err)
	}
	port := p.GroupAddr("broker-b")
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	for _, seed := range [][]byte{
		testutil.Frame(f, remoting.SendMessageV2, map[string]string{"a": "pg", "b": "T", "e": "1", "f": "0", "g": now, "h": "0", "i": "", "j": "0"}, []byte("x")),
		testutil.Frame(f, remoting.SendMessage, map[string]string{"producerGroup": "pg", "topic": "T", "queueId": "9"}, []byte("x")),
		testutil.Frame(f, remoting.AckMessage, map[string]string{"consumerGroup": "g", "topic": "T", "queueId": "0", "extraInfo": "0 " + now + " 1000 0 0 broker-a 0 0", "offset": "0"}, nil),
		testutil.Frame(f, remoting.BatchAckMessage, nil, []byte(`{"consumerGroup":"g","brokerName":"broker-a","acks":[]}`)),
		testutil.Frame(f, remoting.HeartBeat, nil, []byte(`{"clientID":"c1","consumerDataSet":[]}`)),
		append(testutil.Frame(f, remoting.GetMaxOffset, map[string]string{"topic": "T", "queueId": "0"}, nil)[:8], 0xff),
		{0, 0, 0, 8, 1, 0, 0, 4, 0xff, 0xff, 0xff, 0xff},
		{},
	} {
		f.Add(seed)
	}
	probe := testutil.Frame(f, remoting.GetMaxOffset, map[string]string{"topic": "T", "queueId": "0"}, nil)

	f.Fuzz(func(t *testing.T, data []byte) {
		nc, err := net.DialTimeout("tcp", port, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = nc.SetDeadline(time.Now().Add(time.Second))
		_, _ = nc.Write(data)
		nc.Close()

		fresh, err := net.DialTimeout("tcp", port, time.Second)
		if err != nil {
			t.Fatalf("the proxy stopped accepting: %v", err)
		}
		defer fresh.Close()
		_ = fresh.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fresh.Write(probe); err != nil {
			t.Fatal(err)
		}
		resp, err := remoting.NewReader(fresh, 0).Read()
		if err != nil || resp.Code != remoting.Success {
			t.Fatalf("a fresh connection is not proxied: %v %v", resp, err)
		}
	})
}
