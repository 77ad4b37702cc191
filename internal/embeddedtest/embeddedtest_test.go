package embeddedtest

import (
	"testing"

	"github.com/rocketpilot/rocketpilot/internal/leakcheck"
	"github.com/rocketpilot/rocketpilot/nameserver/client"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// TestStartDemoAnswersOnLoopback: the demo NameServer lists the demo topics to a real client, and closes with
// the test.
func TestStartDemoAnswersOnLoopback(t *testing.T) {
	ns := StartDemo(t)
	want := embedded.New(embedded.Options{})
	embedded.LoadDemo(want)
	c := client.New(ns.Addr(), client.Options{})
	defer c.Close()
	topics, err := c.GetAllTopicList(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(topics) != want.TopicCount() {
		t.Fatalf("%d topics listed, want the demo's %d", len(topics), want.TopicCount())
	}
}
