package simbroker

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/internal/testutil"
	"github.com/rocketpilot/rocketpilot/remoting"
)

// FuzzServeConnection writes arbitrary bytes to a broker connection, seeded with the requests clients send: the
// broker must neither crash nor stop serving, and a fresh connection is answered afterwards. Every header and
// body decoder of the broker (send, batch, pull, offsets, heartbeat, locks, pop, ack, batch ack) is behind it. The
// broker is shared by all inputs and has a small frame limit, so that announced lengths cost nothing.
func FuzzServeConnection(f *testing.F) {
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	send := map[string]string{"a": "pg", "b": "T", "c": "TBW102", "d": "4", "e": "0", "f": "0", "g": now, "h": "0",
		"i": "TAGS\x01a\x02", "j": "0", "k": "false", "m": "false"}
	pop := map[string]string{"consumerGroup": "cg", "topic": "T", "queueId": "-1", "maxMsgNums": "4",
		"invisibleTime": "1000", "pollTime": "0", "bornTime": now, "initMode": "0", "order": "false"}
	ack := map[string]string{"consumerGroup": "cg", "topic": "T", "queueId": "0", "extraInfo": "0 " + now + " 1000 0 0 broker-a 0 0",
		"offset": "0"}
	lock := []byte(`{"consumerGroup":"cg","clientId":"c1","mqSet":[{"topic":"T","brokerName":"broker-a","queueId":0}]}`)
	pull := pullReq("T", 0, 0, 50)
	for _, seed := range [][]byte{
		testutil.Frame(f, remoting.SendMessageV2, send, []byte("body")),
		testutil.Frame(f, remoting.SendBatchMessage, send, []byte{0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'x', 0, 0}),
		testutil.Frame(f, remoting.PullMessage, pull, nil),
		testutil.Frame(f, remoting.HeartBeat, nil, heartbeat("c1", "cg", "T")),
		testutil.Frame(f, remoting.LockBatchMQ, nil, lock),
		testutil.Frame(f, remoting.PopMessage, pop, nil),
		testutil.Frame(f, remoting.AckMessage, ack, nil),
		testutil.Frame(f, remoting.BatchAckMessage, nil, []byte(`{"consumerGroup":"cg","brokerName":"broker-a","acks":[{"c":"cg","t":"T","r":"0","so":0,"q":0,"rq":0,"pt":1,"it":1000,"b":"AQ=="}]}`)),
		testutil.Frame(f, remoting.QueryConsumerOffset, map[string]string{"consumerGroup": "cg", "topic": "T", "queueId": "0"}, nil),
		testutil.Frame(f, 12345, nil, nil),
		{},
		{0, 0, 0, 8, 1, 0, 0, 4, 0xff, 0xff, 0xff, 0xff},
	} {
		f.Add(seed)
	}
	b := New(Options{Cluster: "DefaultCluster", Name: "broker-a", Topics: []remoting.TopicConfig{topicConfig("T", 2)},
		MaxFrameSize: 1 << 16})
	if err := b.Start(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { b.Close() })
	probe := testutil.Frame(f, remoting.GetMaxOffset, map[string]string{"topic": "T", "queueId": "0"}, nil)

	f.Fuzz(func(t *testing.T, data []byte) {
		nc, err := net.DialTimeout("tcp", b.Addr(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = nc.SetDeadline(time.Now().Add(time.Second))
		_, _ = nc.Write(data)
		nc.Close() // held pulls and pops of this input are answered to nobody

		fresh, err := net.DialTimeout("tcp", b.Addr(), time.Second)
		if err != nil {
			t.Fatalf("broker stopped accepting: %v", err)
		}
		defer fresh.Close()
		_ = fresh.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fresh.Write(probe); err != nil {
			t.Fatal(err)
		}
		resp, err := remoting.NewReader(fresh, 0).Read()
		if err != nil || resp.Code != remoting.Success {
			t.Fatalf("fresh connection not served: %v %v", resp, err)
		}
	})
}
