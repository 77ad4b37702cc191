package embedded

import (
	"encoding/binary"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"
)

func frameOf(t testing.TB, cmd *remoting.Command) []byte {
	t.Helper()
	b, err := remoting.Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzServeConnection writes arbitrary bytes to a connection: the server must neither crash nor stop serving,
// and a fresh connection is answered afterwards. The server is shared by all inputs and has a small frame limit,
// so that announced lengths cost nothing.
func FuzzServeConnection(f *testing.F) {
	binReq := routeReq(DemoTopic)
	binReq.HeaderType = remoting.SerializeRocketMQ
	oneway := req(remoting.GetAllTopicListFromNameServer, nil)
	oneway.Flag = remoting.FlagOneway
	two := append(frameOf(f, routeReq(DemoTopic)), frameOf(f, req(remoting.GetKVConfig, map[string]string{"namespace": "n", "key": "k"}))...)
	// A broker that registers (and is removed when the input's connection closes), then unregisters.
	fuzzBroker := brk{cluster: DemoCluster, name: "fuzz-broker", addr: "10.9.9.9:10911"}
	reg := frameOf(f, registerReq(fuzzBroker.header(), 1, topicConf(DemoTopic, 2, 6)))
	unreg := frameOf(f, remoting.NewUnregisterBrokerRequest(remoting.UnregisterBrokerHeader{BrokerName: fuzzBroker.name,
		BrokerAddr: fuzzBroker.addr, ClusterName: fuzzBroker.cluster}))
	for _, seed := range [][]byte{
		frameOf(f, routeReq(DemoTopic)),
		frameOf(f, binReq),
		frameOf(f, oneway),
		frameOf(f, req(remoting.GetTopicsByCluster, map[string]string{"cluster": DemoCluster})),
		frameOf(f, req(999, nil)),
		two,
		reg,
		append(slices.Clone(reg), unreg...),
		{},
		[]byte("\x00\x00\x00\x08\x01\x00\x00\x04\xff\xff\xff\xff"),
		binary.BigEndian.AppendUint32(nil, 1<<31),
		[]byte("GET / HTTP/1.0\r\n\r\n"),
	} {
		f.Add(seed)
	}
	s := New(Options{MaxFrameSize: 1 << 16})
	if err := s.Start(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close() })
	LoadDemo(s)
	probe := frameOf(f, routeReq(DemoTopic))

	f.Fuzz(func(t *testing.T, data []byte) {
		nc, err := net.DialTimeout("tcp", s.Addr(), ioTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(ioTimeout))
		if _, err := nc.Write(data); err == nil {
			_ = nc.(*net.TCPConn).CloseWrite()
			// Drain until the server closes: it answers what it understood and hangs up on the rest or at EOF.
			if _, err := io.Copy(io.Discard, nc); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() || !isConnError(err) {
					t.Fatalf("server did not close the connection: %v", err)
				}
			}
		}

		fresh, err := net.DialTimeout("tcp", s.Addr(), ioTimeout)
		if err != nil {
			t.Fatalf("server stopped accepting: %v", err)
		}
		defer fresh.Close()
		_ = fresh.SetDeadline(time.Now().Add(ioTimeout))
		if _, err := fresh.Write(probe); err != nil {
			t.Fatal(err)
		}
		resp, err := remoting.NewReader(fresh, 0).Read()
		if err != nil || resp.Code != remoting.Success {
			t.Fatalf("fresh connection not served: %v %v", resp, err)
		}
	})
}
