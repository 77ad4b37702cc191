package remoting

import (
	"fmt"
	"testing"
)

// benchRoute is a route of realistic size: 4 broker groups with master and slave.
func benchRoute() *TopicRouteData {
	r := &TopicRouteData{FilterServerTable: map[string][]string{}}
	for i := range 4 {
		name := fmt.Sprintf("broker-%d", i)
		r.BrokerDatas = append(r.BrokerDatas, BrokerData{Cluster: "DefaultCluster", BrokerName: name,
			BrokerAddrs: map[int64]string{0: fmt.Sprintf("10.0.%d.1:10911", i), 1: fmt.Sprintf("10.0.%d.2:10911", i)}})
		r.QueueDatas = append(r.QueueDatas, QueueData{BrokerName: name, ReadQueueNums: 8, WriteQueueNums: 8, Perm: 6})
	}
	return r
}

// BenchmarkDecodeRouteResponse decodes a whole 105 response frame (header and body) in both dialects.
func BenchmarkDecodeRouteResponse(b *testing.B) {
	for _, standard := range []bool{false, true} {
		name := "legacy"
		if standard {
			name = "standard"
		}
		frame, err := Encode(&Command{Flag: FlagResponse, Opaque: 7, Body: benchRoute().Encode(standard)})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				cmd, err := Decode(frame[4:])
				if err != nil {
					b.Fatal(err)
				}
				if _, err := DecodeTopicRouteData(cmd.Body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodeRoute(b *testing.B) {
	r := benchRoute()
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Encode(false)
	}
}

// BenchmarkDecodePartial decodes what a proxy reads of the frames it passes on: a send (SEND_MESSAGE_V2, as the Go
// client writes it, 1 KiB body) with only its topic and queue, and a broker's answer to it with nothing of its
// extFields; each both into a new command and into the same one (DecodePartialInto).
func BenchmarkDecodePartial(b *testing.B) {
	send := NewRequest(SendMessageV2, map[string]string{"a": "producer", "b": "TopicTest", "c": "TBW102", "d": "4",
		"e": "3", "f": "0", "g": "1765148000000", "h": "0", "i": "UNIQ_KEY\u0001C0A8000100002A9F00000000000001\u0002WAIT\u0001true\u0002",
		"j": "0", "k": "false", "m": "false"})
	send.Opaque, send.Body = 42, make([]byte, 1024)
	answer := &Command{Flag: FlagResponse, Opaque: 42, ExtFields: map[string]string{"msgId": "C0A8000100002A9F0000000000000001",
		"queueId": "3", "queueOffset": "1234", "transactionId": "C0A8000100002A9F00000000000001", "MSG_REGION": "DefaultRegion", "TRACE_ON": "true"}}
	keepSend := func(int32) []string { return []string{"b", "e", "topic", "queueId"} }
	for _, c := range []struct {
		name string
		cmd  *Command
		keep func(int32) []string
	}{{"send", send, keepSend}, {"answer", answer, Nothing}} {
		frame, err := Encode(c.cmd)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodePartial(frame[4:], c.keep); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/into", func(b *testing.B) {
			b.ReportAllocs()
			var cmd Command
			for b.Loop() {
				if err := DecodePartialInto(&cmd, frame[4:], c.keep); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
