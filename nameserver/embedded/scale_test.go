package embedded

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"
)

func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// maxBytesPerTopic bounds the heap the server spends per topic beyond the topic name itself: the topic map
// entry (a string header and a shape pointer, with the map's slack) plus, once a topic list was asked for, the
// cached sorted list's string header. Measured: about 45-60 bytes before and 16 more after the first listing,
// depending on where the map's last doubling falls.
const maxBytesPerTopic = 100

// TestMillionTopicsMemory loads 1,000,000 topics over a few shapes and checks the heap they cost, then that the
// 206 and 105 answers stay fast at that size.
func TestMillionTopicsMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("loads a million topics")
	}
	const n = 1_000_000
	names := make([]string, n) // the names are the caller's; the server keeps them without copying
	nameBytes := 0
	for i := range names {
		names[i] = fmt.Sprintf("scale-topic-%07d", i)
		nameBytes += len(names[i])
	}
	shapes := [][]remoting.QueueData{
		{rw("broker-a", 8), rw("broker-b", 8)},
		{rw("broker-a", 4)},
		{rw("broker-c", 4), ro("broker-b", 4)},
		{rw("broker-a", 2), rw("broker-b", 2), rw("broker-c", 2), rw("broker-d", 2)},
	}
	s := start(t, Options{})
	for _, b := range DemoBrokers() {
		s.RegisterBroker(b)
	}

	before := heapInUse()
	t0 := time.Now()
	for i, sh := range shapes { // a quarter of the topics per shape, interleaved in name order
		group := make([]string, 0, n/len(shapes))
		for j := i; j < n; j += len(shapes) {
			group = append(group, names[j])
		}
		s.SetTopics(group, sh...)
	}
	load := time.Since(t0)
	loaded := heapInUse()
	perTopic := float64(loaded-before) / n
	_ = s.Topics() // fills the sorted-list cache
	listed := heapInUse()
	perTopicListed := float64(listed-before) / n
	t.Logf("%d topics loaded in %v; heap per topic beyond the name (%d bytes of names, %.1f per topic): %.1f B, "+
		"%.1f B once listed; %d shapes", n, load, nameBytes, float64(nameBytes)/n, perTopic, perTopicListed, s.st.shapeCount())
	if s.TopicCount() != n || s.st.shapeCount() != len(shapes) {
		t.Fatalf("%d topics, %d shapes", s.TopicCount(), s.st.shapeCount())
	}
	if perTopicListed > maxBytesPerTopic {
		t.Fatalf("%.1f bytes per topic, bound %d", perTopicListed, maxBytesPerTopic)
	}

	// 206 over the wire: one body with every name, built in one pass.
	c := dial(t, s.Addr())
	t0 = time.Now()
	resp := c.call(req(remoting.GetAllTopicListFromNameServer, nil))
	// Checked without a JSON decoder, which would dominate the time under the race detector.
	wantCode(t, resp, remoting.Success, "")
	body := resp.Body
	if !bytes.HasPrefix(body, []byte(`{"topicList":["`+names[0]+`","`+names[1]+`",`)) ||
		!bytes.HasSuffix(body, []byte(`","`+names[n-1]+`"]}`)) || bytes.Count(body, []byte(`","`)) != n-1 {
		t.Fatalf("206 body of %d bytes: %.100s … %s", len(body), body, body[max(0, len(body)-60):])
	}
	t.Logf("206 with %d topics: %d bytes in %v", n, len(body), time.Since(t0))

	// 105 does not depend on the number of topics.
	t0 = time.Now()
	for i := range 1000 {
		wantCode(t, c.call(routeReq(names[i*997])), remoting.Success, "")
	}
	t.Logf("1000 route queries at %d topics: %v", n, time.Since(t0))

	// A perm change copies one shape, not the topic table.
	if err := s.SetPerm(names[3], "broker-d", remoting.PermRead); err != nil {
		t.Fatal(err)
	}
	if s.st.shapeCount() != len(shapes)+1 {
		t.Fatalf("%d shapes after SetPerm", s.st.shapeCount())
	}

	// Expiring a group rewrites each shape once and walks the topics once.
	t0 = time.Now()
	s.ExpireBroker("broker-a")
	t.Logf("ExpireBroker at %d topics: %v", n, time.Since(t0))
	// The quarter on broker-a alone goes; the other shapes (SetPerm's copy included) each lose broker-a's queues.
	if s.TopicCount() != n-n/4 || s.st.shapeCount() != 4 {
		t.Fatalf("%d topics, %d shapes after expiring broker-a", s.TopicCount(), s.st.shapeCount())
	}
	runtime.KeepAlive(names)
}
