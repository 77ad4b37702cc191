package simbroker

import (
	"testing"
)

// FuzzDecodeBatchAck: any BATCH_ACK_MESSAGE body yields a BatchAckMessageRequestBody or an error, never a panic;
// a decoded ack's bit set is walked as batchAck walks it.
func FuzzDecodeBatchAck(f *testing.F) {
	for _, seed := range []string{
		// As MQClientAPIImpl.batchAckMessageAsync writes it with fastjson (BatchAck's @JSONField names, the bit set
		// as BitSet.toByteArray in base64).
		`{"acks":[{"b":"Bw==","c":"g","it":30000,"pt":1700000000000,"q":0,"r":"0","rq":3,"so":12,"t":"T"}],"brokerName":"broker-a"}`,
		// The alternate long names, numbers in strings, the bit set as an array.
		`{"acks":[{"consumerGroup":"g","topic":"T","retry":"1","startOffset":"5","queueId":1,"reviveQueueId":999,"popTime":1,"invisibleTime":2,"bitSet":[1,-128]}]}`,
		`{"acks":[null]}`,
		`{"acks":[]}`,
		`{}`,
		`{"acks":[{"b":"!!"}]}`,
		`{"acks":[{"so":9223372036854775808}]}`,
		`{"acks":[{"b":[256]}]} {}`,
		`null`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		body, err := decodeBatchAck(data)
		if err != nil {
			if len(body.Acks) != 0 || body.BrokerName != "" {
				t.Fatalf("an error with a value: %+v, %v", body, err)
			}
			return
		}
		for _, a := range body.Acks {
			n := 0
			for i, set := range a.bits() {
				if i != n {
					t.Fatalf("bit %d after %d", i, n)
				}
				n++
				_ = set
			}
			if n != 8*len(a.BitSet) {
				t.Fatalf("%d bits of %d bytes", n, len(a.BitSet))
			}
		}
	})
}
