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
