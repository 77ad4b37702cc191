package translate

import (
	"slices"
	"testing"
	"time"
)

// TestRulesReadRoutesBack: Rules names every route TopicRoute builds by what it carries, in match order, with its
// codes, cluster and subset: the pop routes first, send, consume, one ack route per readable group, the rest.
func TestRulesReadRoutesBack(t *testing.T) {
	tp := popTopic(t, 8*time.Second, "orders-a")
	tp.Pop.Ordered = true
	rules := Rules(TopicRoute(tp))
	var kinds []string
	for _, r := range rules {
		kinds = append(kinds, r.Kind)
		if r.Cluster != ClusterName(tp.BrokerSet) {
			t.Errorf("%s goes to %s, want the topic's cluster", r.Kind, r.Cluster)
		}
	}
	acks := 0
	for i := range tp.BrokerSet.Members {
		if carrier(&tp.BrokerSet.Members[i]) >= 0 && tp.BrokerSet.Members[i].AcksReadable() {
			acks++
		}
	}
	want := append([]string{"pop", "send", "consume"}, slices.Repeat([]string{"ack"}, acks)...)
	if want = append(want, "other"); !slices.Equal(kinds, want) || acks == 0 {
		t.Fatalf("kinds %v, want %v", kinds, want)
	}
	pop, send, ack, other := rules[0], rules[1], rules[3], rules[len(rules)-1]
	if pop.Detail != "group orders-a, invisible 8s, ordered" || pop.Codes != "11" || pop.Subset != SubsetReadable {
		t.Errorf("pop rule %+v", pop)
	}
	if send.Codes != "10|310" || send.Subset != SubsetWritable || send.Inverted {
		t.Errorf("send rule %+v", send)
	}
	if ack.Subset != SubsetBrokerName+"="+tp.BrokerSet.Members[0].BrokerName || ack.Detail == "" {
		t.Errorf("ack rule %+v", ack)
	}
	if other.Codes != "51" || !other.Inverted || other.Subset != "" {
		t.Errorf("catch-all rule %+v", other)
	}
}
