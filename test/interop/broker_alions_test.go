package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/simbroker"
)

// aliOnsFlowTimeout bounds one node/produce_consume.js process, node start-up included.
const aliOnsFlowTimeout = 90 * time.Second

// aliOnsMQ is a message queue of the demo topic as produce_consume.js prints it.
type aliOnsMQ struct {
	BrokerName string `json:"brokerName"`
	QueueID    int    `json:"queueId"`
}

func (q aliOnsMQ) String() string { return fmt.Sprintf("%s/%d", q.BrokerName, q.QueueID) }

// aliOnsMsg is a message as ali-ons' producer sent it or its consumer received it.
type aliOnsMsg struct {
	Key         string `json:"key"`
	MsgID       string `json:"msgId"`
	BrokerName  string `json:"brokerName"`
	QueueID     int    `json:"queueId"`
	QueueOffset int64  `json:"queueOffset"`
	Status      string `json:"status"`         // sent only
	Reconsume   int    `json:"reconsumeTimes"` // received only
}

func (m aliOnsMsg) queue() aliOnsMQ { return aliOnsMQ{m.BrokerName, m.QueueID} }

// aliOnsLine is one line of produce_consume.js's output: exactly one field is set.
type aliOnsLine struct {
	Sent      *aliOnsMsg `json:"sent"`
	SendError *struct {
		Key     string `json:"key"`
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"sendError"`
	Produced *struct {
		Count  int   `json:"count"`
		Errors int   `json:"errors"`
		MS     int64 `json:"ms"`
	} `json:"produced"`
	Queues *[]aliOnsMQ `json:"queues"`
	Msg    *aliOnsMsg  `json:"msg"`
	Closed *struct {
		ClientID         string `json:"clientId"`
		Errors           int    `json:"errors"`
		RetryRouteMisses int    `json:"retryRouteMisses"`
	} `json:"closed"`
}

// lockedBuffer is a bytes.Buffer safe for the writer goroutine exec starts and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// aliOnsProc is a running `node produce_consume.js`: its output lines arrive on lines, which is closed when
// stdout ends; exited is closed once the process has been waited for, with its error in err.
type aliOnsProc struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *lockedBuffer
	lines  chan aliOnsLine
	exited chan struct{}
	err    error
}

// startAliOns starts `node produce_consume.js args...` in nodeDir; the process is killed, if still running, when
// the test ends.
func startAliOns(t *testing.T, node, name string, args ...string) *aliOnsProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), aliOnsFlowTimeout)
	cmd := exec.CommandContext(ctx, node, append([]string{"produce_consume.js"}, args...)...)
	cmd.Dir = nodeDir
	cmd.WaitDelay = 5 * time.Second
	p := &aliOnsProc{name: name, cmd: cmd, stderr: &lockedBuffer{}, lines: make(chan aliOnsLine, 4096), exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", name, err)
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var l aliOnsLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				fmt.Fprintf(p.stderr, "[test] %s printed a line that is not JSON (%v): %s\n", name, err, sc.Bytes())
				continue
			}
			p.lines <- l
		}
	}()
	go func() {
		<-read // Wait closes stdout: read it to the end first
		p.err = cmd.Wait()
		cancel()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cancel()
		<-p.exited
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, p.stderr.String())
		}
	})
	return p
}

// next returns the process's next output line, or fails the test when none comes before deadline.
func (p *aliOnsProc) next(t *testing.T, deadline <-chan time.Time, waitingFor string) (aliOnsLine, bool) {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		return l, ok
	case <-deadline:
		t.Fatalf("%s: timed out waiting for %s", p.name, waitingFor)
		return aliOnsLine{}, false
	}
}

// wait waits for the process to exit and fails the test unless it exited 0.
func (p *aliOnsProc) wait(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(aliOnsFlowTimeout):
		t.Fatalf("%s did not exit", p.name)
	}
	if p.err != nil {
		t.Fatalf("%s: %v\nstderr:\n%s", p.name, p.err, p.stderr.String())
	}
}

// startDemoForAliOns starts an embedded NameServer without data and the simulated demo brokers, which register
// with it (REGISTER_BROKER): nothing else. It returns the NameServer's address.
func startDemoForAliOns(t *testing.T) (*embedded.NameServer, *simbroker.Demo) {
	t.Helper()
	ns := startNameServer(t, embedded.Options{}, false)
	demo, err := simbroker.StartDemo(simbroker.DemoOptions{NameServers: []string{ns.Addr()}})
	if err != nil {
		t.Fatalf("start the demo brokers: %v", err)
	}
	t.Cleanup(demo.Close)
	return ns, demo
}

// requireRetryTopic fails the test unless the NameServer routes the group's retry topic: the brokers create it on
// the group's first heartbeat and register it at once, as createTopicInSendMessageBackMethod does.
func requireRetryTopic(t *testing.T, ns *embedded.NameServer, group string) {
	t.Helper()
	route, ok := ns.Route(simbroker.RetryTopicPrefix + group)
	if !ok || len(route.QueueDatas) == 0 {
		t.Errorf("the NameServer has no route for %s%s after the consumer's heartbeat: %+v", simbroker.RetryTopicPrefix, group, route)
	}
}

// demoTopicQueues are TopicTest's queues in the demo: 4 on broker-a and 4 on broker-b.
func demoTopicQueues() []aliOnsMQ {
	var qs []aliOnsMQ
	for _, b := range []string{"broker-a", "broker-b"} {
		for i := range 4 {
			qs = append(qs, aliOnsMQ{b, i})
		}
	}
	return qs
}

// produceAliOns sends n messages with ali-ons' Producer, keys prefix-0…, and returns them by key as sent.
func produceAliOns(t *testing.T, node, nsAddr, prefix string, n int) map[string]aliOnsMsg {
	t.Helper()
	p := startAliOns(t, node, "producer", "produce", nsAddr, simbroker.DemoTopic, fmt.Sprint(n), prefix)
	sent := map[string]aliOnsMsg{}
	deadline := time.After(aliOnsFlowTimeout)
	var failures []string
	for {
		l, ok := p.next(t, deadline, "the producer's output")
		if !ok {
			break
		}
		switch {
		case l.Sent != nil:
			if _, dup := sent[l.Sent.Key]; dup {
				t.Errorf("the producer reported %s sent twice", l.Sent.Key)
			}
			sent[l.Sent.Key] = *l.Sent
		case l.SendError != nil:
			failures = append(failures, fmt.Sprintf("%s: code %d: %s", l.SendError.Key, l.SendError.Code, l.SendError.Message))
		case l.Produced != nil:
			t.Logf("ali-ons produced %d messages in %d ms, %d errors", l.Produced.Count, l.Produced.MS, l.Produced.Errors)
		}
	}
	p.wait(t)
	if len(failures) > 0 {
		t.Fatalf("%d of %d sends failed, the first: %s", len(failures), n, failures[0])
	}
	if len(sent) != n {
		t.Fatalf("the producer reported %d messages sent, want %d", len(sent), n)
	}
	perQueue := map[aliOnsMQ]int{}
	for _, m := range sent {
		if m.Status != "SEND_OK" || m.MsgID == "" {
			t.Fatalf("send of %s answered %+v, want SEND_OK with a message id", m.Key, m)
		}
		perQueue[m.queue()]++
	}
	for _, q := range demoTopicQueues() {
		if perQueue[q] == 0 {
			t.Errorf("the producer sent nothing to %v: %v", q, perQueue)
		}
	}
	return sent
}

// aliOnsConsumer is a running ali-ons push consumer and what it reported.
type aliOnsConsumer struct {
	*aliOnsProc
	queues   []aliOnsMQ             // its last reported allocation
	received map[string][]aliOnsMsg // by key, every delivery
	total    int
	clientID string
}

func startAliOnsConsumer(t *testing.T, node, nsAddr, group, name string, args ...string) *aliOnsConsumer {
	t.Helper()
	args = append([]string{"consume", nsAddr, simbroker.DemoTopic, group}, args...)
	return &aliOnsConsumer{aliOnsProc: startAliOns(t, node, name, args...), received: map[string][]aliOnsMsg{}}
}

// take reads and records one output line; it returns false when the output ended.
func (c *aliOnsConsumer) take(t *testing.T, deadline <-chan time.Time, waitingFor string) bool {
	t.Helper()
	l, ok := c.next(t, deadline, waitingFor)
	if ok {
		c.handle(t, l)
	}
	return ok
}

// handle records one output line.
func (c *aliOnsConsumer) handle(t *testing.T, l aliOnsLine) {
	t.Helper()
	switch {
	case l.Queues != nil:
		c.queues = *l.Queues
		t.Logf("%s holds %v", c.name, c.queues)
	case l.Msg != nil:
		c.received[l.Msg.Key] = append(c.received[l.Msg.Key], *l.Msg)
		c.total++
	case l.Closed != nil:
		c.clientID = l.Closed.ClientID
		if l.Closed.Errors > 0 {
			t.Errorf("%s reported %d client errors:\n%s", c.name, l.Closed.Errors, c.stderr.String())
		}
		if l.Closed.RetryRouteMisses > 0 {
			t.Logf("%s looked its retry topic up %d times before the brokers had its first heartbeat", c.name,
				l.Closed.RetryRouteMisses)
		}
	}
}

// close ends the consumer (its stdin), which commits its offsets and unregisters, and reads its output to the end.
func (c *aliOnsConsumer) close(t *testing.T) {
	t.Helper()
	c.stdin.Close()
	deadline := time.After(30 * time.Second)
	for c.take(t, deadline, "the consumer to close") {
	}
	c.wait(t)
	if c.clientID == "" {
		t.Errorf("%s exited without reporting its close", c.name)
	}
}

// awaitQueues reads the consumers' output until each holds the queues want gives it.
func awaitQueues(t *testing.T, d time.Duration, want map[*aliOnsConsumer][]aliOnsMQ) {
	t.Helper()
	deadline := time.After(d)
	for {
		settled := true
		for c, q := range want {
			if !slices.Equal(c.queues, q) {
				settled = false
			}
		}
		if settled {
			return
		}
		// Read whichever consumer has output; each read is bounded by the deadline.
		progressed := false
		for c := range want {
			select {
			case l, ok := <-c.lines:
				if !ok {
					t.Fatalf("%s exited while waiting for its queues\nstderr:\n%s", c.name, c.stderr.String())
				}
				c.handle(t, l)
				progressed = true
			default:
			}
		}
		if !progressed {
			select {
			case <-deadline:
				var got []string
				for c, q := range want {
					got = append(got, fmt.Sprintf("%s holds %v, want %v", c.name, c.queues, q))
				}
				t.Fatalf("queues not allocated within %v: %s", d, strings.Join(got, "; "))
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// awaitAll reads the consumers' output until every sent key was received by one of them.
func awaitAll(t *testing.T, d time.Duration, sent map[string]aliOnsMsg, cs ...*aliOnsConsumer) {
	t.Helper()
	deadline := time.After(d)
	got := map[string]bool{} // the sent keys received so far, by any consumer
	for _, c := range cs {
		for k := range c.received {
			if _, ok := sent[k]; ok {
				got[k] = true
			}
		}
	}
	for len(got) < len(sent) {
		progressed := false
		for _, c := range cs {
			select {
			case l, ok := <-c.lines:
				if !ok {
					t.Fatalf("%s exited before every message arrived\nstderr:\n%s", c.name, c.stderr.String())
				}
				c.handle(t, l)
				if l.Msg != nil {
					if _, ok := sent[l.Msg.Key]; ok {
						got[l.Msg.Key] = true
					}
				}
				progressed = true
			default:
			}
		}
		if !progressed {
			select {
			case <-deadline:
				t.Fatalf("%d of %d messages not consumed within %v", len(sent)-len(got), len(sent), d)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// checkDeliveries checks that every delivery is of a sent message, as it was sent, and returns how many
// deliveries were duplicates.
func checkDeliveries(t *testing.T, sent map[string]aliOnsMsg, c *aliOnsConsumer) (dups int) {
	t.Helper()
	for k, ds := range c.received {
		s, ok := sent[k]
		if !ok {
			t.Errorf("%s received %s, which was not sent: %+v", c.name, k, ds)
			continue
		}
		dups += len(ds) - 1
		for _, d := range ds {
			if d.MsgID != s.MsgID || d.queue() != s.queue() || d.QueueOffset != s.QueueOffset || d.Reconsume != 0 {
				t.Errorf("%s received %s as %+v, sent as %+v", c.name, k, d, s)
			}
		}
	}
	return dups
}

// TestAliOnsProducesAndConsumesThroughSimBrokers runs ali-ons' Producer and push Consumer (clustering) against the
// simulated demo brokers, found through the embedded NameServer they registered with: every message the producer
// sends to TopicTest's 8 queues on broker-a and broker-b is consumed, with the id, queue and offset the send
// answered. A consumer of the same group started afterwards resumes from the offsets the first one committed:
// it receives only what is sent after.
func TestAliOnsProducesAndConsumesThroughSimBrokers(t *testing.T) {
	node := requireAliOns(t)
	ns, demo := startDemoForAliOns(t)
	aliOnsAcceptance(t, node, ns, demo, ns.Addr())
}

// TestAliOnsThroughSidecar is the same with ali-ons given only a sidecar's address as its NameServer.
func TestAliOnsThroughSidecar(t *testing.T) {
	node := requireAliOns(t)
	ns, demo := startDemoForAliOns(t)
	aliOnsAcceptance(t, node, ns, demo, startSidecar(t, &simCluster{ns: ns, demo: demo}))
}

// aliOnsAcceptance runs ali-ons' producer and consumer against the demo brokers, given nsAddr as their NameServer.
func aliOnsAcceptance(t *testing.T, node string, ns *embedded.NameServer, demo *simbroker.Demo, nsAddr string) {
	start := time.Now()
	const n, group = 10000, "interop-alions-consumer"

	c := startAliOnsConsumer(t, node, nsAddr, group, "consumer")
	awaitQueues(t, 20*time.Second, map[*aliOnsConsumer][]aliOnsMQ{c: demoTopicQueues()})
	requireRetryTopic(t, ns, group)

	sent := produceAliOns(t, node, nsAddr, "k", n)
	awaitAll(t, 30*time.Second, sent, c)
	c.close(t)
	dups := checkDeliveries(t, sent, c)
	t.Logf("%d messages sent, %d deliveries, %d duplicates, in %v", n, c.total, dups, time.Since(start).Round(time.Millisecond))
	if dups > 0 {
		t.Errorf("%d duplicate deliveries with one consumer and no failure", dups)
	}

	// The same group again: it resumes from the committed offsets, so only the newer messages arrive.
	again := startAliOnsConsumer(t, node, nsAddr, group, "consumer again")
	awaitQueues(t, 20*time.Second, map[*aliOnsConsumer][]aliOnsMQ{again: demoTopicQueues()})
	more := produceAliOns(t, node, nsAddr, "k2", 40)
	awaitAll(t, 30*time.Second, more, again)
	again.close(t)
	if dups := checkDeliveries(t, more, again); dups > 0 || again.total != len(more) {
		t.Errorf("the restarted consumer received %d deliveries (%d duplicates), want only the %d newer messages",
			again.total, dups, len(more))
	}
	if got := demo.Broker("broker-a", 0).Dropped() + demo.Broker("broker-b", 0).Dropped(); got != 0 {
		t.Errorf("the brokers dropped %d messages", got)
	}
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}

// TestAliOnsConsumersSplitQueues runs two ali-ons push consumers of one group (two processes, so two client ids):
// the brokers list both in the group (GET_CONSUMER_LIST_BY_GROUP), so ali-ons' averaging allocation gives each
// one broker's 4 queues, and every message sent then is consumed by the consumer holding its queue.
func TestAliOnsConsumersSplitQueues(t *testing.T) {
	node := requireAliOns(t)
	start := time.Now()
	ns, _ := startDemoForAliOns(t)
	nsAddr := ns.Addr()
	const n, group = 1000, "interop-alions-split"

	first := startAliOnsConsumer(t, node, nsAddr, group, "first consumer")
	awaitQueues(t, 20*time.Second, map[*aliOnsConsumer][]aliOnsMQ{first: demoTopicQueues()})
	second := startAliOnsConsumer(t, node, nsAddr, group, "second consumer")
	// Client ids are "ip@pid" and sort as strings; the first in order gets broker-a's queues.
	all := demoTopicQueues()
	a, b := all[:4], all[4:]
	want := map[*aliOnsConsumer][]aliOnsMQ{first: a, second: b}
	if fmt.Sprint(second.cmd.Process.Pid) < fmt.Sprint(first.cmd.Process.Pid) {
		want = map[*aliOnsConsumer][]aliOnsMQ{first: b, second: a}
	}
	awaitQueues(t, 20*time.Second, want)

	sent := produceAliOns(t, node, nsAddr, "split", n)
	awaitAll(t, 30*time.Second, sent, first, second)
	first.close(t)
	second.close(t)
	dups := 0
	for _, c := range []*aliOnsConsumer{first, second} {
		dups += checkDeliveries(t, sent, c)
		for _, ds := range c.received {
			for _, d := range ds {
				if !slices.Contains(want[c], d.queue()) {
					t.Errorf("%s received %s from %v, which it does not hold (%v)", c.name, d.Key, d.queue(), want[c])
				}
			}
		}
		if c.total == 0 {
			t.Errorf("%s received nothing", c.name)
		}
	}
	t.Logf("%d messages sent; %s received %d, %s %d; %d duplicates; in %v", n, first.name, first.total, second.name,
		second.total, dups, time.Since(start).Round(time.Millisecond))
	if dups > 0 {
		t.Errorf("%d duplicate deliveries while the allocation was stable", dups)
	}
}
