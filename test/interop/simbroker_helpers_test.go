package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"

	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/simbroker"
)

// simCluster is an embedded NameServer with the simulated demo brokers registered in it (REGISTER_BROKER 103):
// broker-a (a master and a slave) and broker-b, both holding TopicTest with 4 queues.
type simCluster struct {
	ns   *embedded.NameServer
	demo *simbroker.Demo
}

// startSimCluster starts an embedded NameServer without demo data and the simulated demo brokers, which register
// themselves with it; both are closed when the test ends. It returns once the NameServer routes TopicTest to both
// broker groups.
func startSimCluster(t testing.TB) *simCluster {
	t.Helper()
	return startSimClusterWith(t, simbroker.DemoOptions{})
}

// startSimClusterWith is startSimCluster with the demo's options (its NameServers are set here).
func startSimClusterWith(t testing.TB, o simbroker.DemoOptions) *simCluster {
	t.Helper()
	ns := startNameServer(t, embedded.Options{}, false)
	o.NameServers = []string{ns.Addr()}
	demo, err := simbroker.StartDemo(o)
	if err != nil {
		t.Fatalf("StartDemo: %v", err)
	}
	t.Cleanup(demo.Close)
	c := &simCluster{ns: ns, demo: demo}
	// The brokers registered before StartDemo returned: the route must be there, without any wiring by hand.
	adm := startAdmin(t, ns.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	mqs, err := adm.FetchPublishMessageQueues(ctx, simbroker.DemoTopic)
	if err != nil {
		t.Fatalf("the registered brokers give no route for %s: %v", simbroker.DemoTopic, err)
	}
	want := goDemoQueues
	if o.Queues > 0 && o.Groups == 0 { // the demo's two groups, o.Queues each
		want = nil
		for _, g := range []string{"broker-a", "broker-b"} {
			for q := range o.Queues {
				want = append(want, fmt.Sprintf("%s/%d", g, q))
			}
		}
	}
	if got := goQueueNames(mqs); !slices.Equal(got, want) {
		t.Fatalf("publish queues of %s = %v, want %v", simbroker.DemoTopic, got, want)
	}
	return c
}

// goDemoQueues are TopicTest's queues in the demo, as goQueueName spells them.
var goDemoQueues = []string{"broker-a/0", "broker-a/1", "broker-a/2", "broker-a/3",
	"broker-b/0", "broker-b/1", "broker-b/2", "broker-b/3"}

func goQueueName(mq *primitive.MessageQueue) string {
	return fmt.Sprintf("%s/%d", mq.BrokerName, mq.QueueId)
}

func goQueueNames(mqs []*primitive.MessageQueue) []string {
	out := make([]string, 0, len(mqs))
	for _, mq := range mqs {
		out = append(out, goQueueName(mq))
	}
	sort.Strings(out)
	return out
}

// master is the address of a broker group's master.
func (c *simCluster) master(t testing.TB, name string) string {
	t.Helper()
	b := c.demo.Broker(name, 0)
	if b == nil {
		t.Fatalf("no master of %s in the demo", name)
	}
	return b.Addr()
}

// brokerCall sends one request to a broker on a connection of its own and returns the answer: the test's own view
// of the broker's state, not the client's.
func brokerCall(t testing.TB, addr string, code int32, ext map[string]string) *remoting.Command {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatalf("dial broker %s: %v", addr, err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	req := remoting.NewRequest(code, ext)
	req.Opaque = 1
	frame, err := remoting.Encode(req)
	if err != nil {
		t.Fatalf("encode request %d: %v", code, err)
	}
	if _, err := nc.Write(frame); err != nil {
		t.Fatalf("write request %d to %s: %v", code, addr, err)
	}
	r := remoting.NewReader(nc, remoting.DefaultMaxFrameSize)
	for {
		resp, err := r.Read()
		if err != nil {
			t.Fatalf("read the answer to %d from %s: %v", code, addr, err)
		}
		if resp.IsResponse() && resp.Opaque == req.Opaque {
			return resp
		}
	}
}

// committedOffset asks a master for a group's committed offset of a queue (QUERY_CONSUMER_OFFSET 14); -1 when the
// broker has none.
func committedOffset(t testing.TB, addr, group, topic string, queue int) int64 {
	t.Helper()
	resp := brokerCall(t, addr, remoting.QueryConsumerOffset,
		map[string]string{"consumerGroup": group, "topic": topic, "queueId": strconv.Itoa(queue)})
	if resp.Code != remoting.Success {
		return -1
	}
	n, err := strconv.ParseInt(resp.Ext("offset"), 10, 64)
	if err != nil {
		t.Fatalf("offset %q: %v", resp.Ext("offset"), err)
	}
	return n
}

// maxOffset asks a master for a queue's max offset (GET_MAX_OFFSET 30): how many messages it holds.
func maxOffset(t testing.TB, addr, topic string, queue int) int64 {
	t.Helper()
	resp := brokerCall(t, addr, remoting.GetMaxOffset, map[string]string{"topic": topic, "queueId": strconv.Itoa(queue)})
	if resp.Code != remoting.Success {
		t.Fatalf("GET_MAX_OFFSET %s/%d: %d %s", topic, queue, resp.Code, resp.Remark)
	}
	n, _ := strconv.ParseInt(resp.Ext("offset"), 10, 64)
	return n
}

// uniqueName is a name no other test of this process uses: rocketmq-client-go shares one client per instance
// name, and a consumer group may be registered once per client.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
}

// shutdownWithin runs shutdown (a client's), failing the test if it errors or does not return within the bound.
func shutdownWithin(t testing.TB, what string, shutdown func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s Shutdown: %v", what, err)
		}
	case <-time.After(clientTimeout):
		t.Errorf("%s Shutdown did not return within %v", what, clientTimeout)
	}
}

// goProducer is the full producer API of rocketmq-client-go.
type goProducer interface {
	Start() error
	Shutdown() error
	SendSync(ctx context.Context, msgs ...*primitive.Message) (*primitive.SendResult, error)
	SendAsync(ctx context.Context, f func(context.Context, *primitive.SendResult, error), msgs ...*primitive.Message) error
	SendOneWay(ctx context.Context, msgs ...*primitive.Message) error
}

// startGoProducer starts an official Go producer on the NameServer that never retries (a send the broker refuses
// fails the test), and shuts it down when the test ends.
func startGoProducer(t testing.TB, nameServer string, opts ...producer.Option) goProducer {
	t.Helper()
	opts = append([]producer.Option{
		producer.WithNameServer([]string{nameServer}),
		producer.WithRetry(0),
		producer.WithGroupName(uniqueName("interop-sim-producer")),
		producer.WithInstanceName(uniqueName("interop-sim-producer")),
		producer.WithSendMsgTimeout(5 * time.Second),
	}, opts...)
	p, err := producer.NewDefaultProducer(opts...)
	if err != nil {
		t.Fatalf("NewDefaultProducer: %v", err)
	}
	if err := p.Start(); err != nil {
		t.Fatalf("producer Start: %v", err)
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { shutdownWithin(t, "producer", p.Shutdown) }) })
	return p
}

// goPushConsumer is a started push consumer; stop shuts it down (once; the test's end does it otherwise).
type goPushConsumer struct {
	instance string
	stop     func()
}

// goConsumeFunc is a push consumer's callback.
type goConsumeFunc func(context.Context, ...*primitive.MessageExt) (consumer.ConsumeResult, error)

// startPushConsumer starts an official Go push consumer of group (clustering model, from the first offset of a
// group the broker has no offset for) subscribed to topic with selector, on a client instance of its own.
func startPushConsumer(t testing.TB, nameServer, group, topic string, selector consumer.MessageSelector, f goConsumeFunc,
	opts ...consumer.Option) *goPushConsumer {
	t.Helper()
	instance := uniqueName("interop-sim-consumer")
	opts = append([]consumer.Option{
		consumer.WithNameServer([]string{nameServer}),
		consumer.WithGroupName(group),
		consumer.WithInstance(instance),
		consumer.WithConsumerModel(consumer.Clustering),
		consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset),
		consumer.WithPullInterval(0),
		consumer.WithPullBatchSize(32),
		consumer.WithConsumeMessageBatchMaxSize(16),
	}, opts...)
	c, err := consumer.NewPushConsumer(opts...)
	if err != nil {
		t.Fatalf("NewPushConsumer(%s): %v", group, err)
	}
	if err := c.Subscribe(topic, selector, f); err != nil {
		t.Fatalf("Subscribe(%s): %v", topic, err)
	}
	if err := c.Start(); err != nil {
		t.Fatalf("push consumer Start(%s): %v", group, err)
	}
	var once sync.Once
	pc := &goPushConsumer{instance: instance, stop: func() {
		once.Do(func() { shutdownWithin(t, "push consumer "+group, c.Shutdown) })
	}}
	t.Cleanup(pc.stop)
	return pc
}

// waitFor polls cond every 20ms until it holds or the bound passes, and reports whether it held.
func waitFor(bound time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(bound)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// goBuild is a Go command built once per test process, without the race detector, as `make build` builds.
type goBuild struct {
	pkg, name string
	once      sync.Once
	path      string
	err       error
}

var orderlyConsumerBuild = goBuild{pkg: "./orderlyconsumer", name: "orderlyconsumer"}

// orderlyConsumerBinary builds ./orderlyconsumer (without the race detector: see its doc).
func orderlyConsumerBinary(t testing.TB) string { return orderlyConsumerBuild.binary(t) }

// binary builds the command on first use and returns its path.
func (b *goBuild) binary(t testing.TB) string {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "interop-"+b.name)
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, b.name)
		cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", b.path, b.pkg)
		cmd.Env = append(os.Environ(), "GOFLAGS=", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// startOrderlyConsumer runs an orderly rocketmq-client-go push consumer of group on topic (tag expression tag) in
// a child process and collects what it receives; the process is stopped (stdin closed, then killed if need be)
// when the test ends.
func startOrderlyConsumer(t *testing.T, nameServer, group, topic, tag string) *goInbox {
	t.Helper()
	return startConsumerProcess(t, nameServer, group, topic, tag, group, true, 0).in
}

// consumerProcess is a rocketmq-client-go push consumer in a child process (orderlyconsumer) and what it received.
type consumerProcess struct {
	in     *goInbox
	cmd    *exec.Cmd
	killed atomic.Bool
}

// kill ends the consumer at once (SIGKILL): no shutdown, no offsets committed, its connections dropped.
func (p *consumerProcess) kill() {
	p.killed.Store(true)
	_ = p.cmd.Process.Kill()
}

// startConsumerProcess runs a push consumer (orderly or concurrent) with its own instance name, and so its own
// client id, taking delay to consume each message, in a child process; it is stopped (stdin closed, then killed if need be) when the test ends.
func startConsumerProcess(t *testing.T, nameServer, group, topic, tag, instance string, orderly bool, delay time.Duration) *consumerProcess {
	t.Helper()
	cmd := exec.Command(orderlyConsumerBinary(t), "-namesrv", nameServer, "-group", group, "-topic", topic, "-tag", tag,
		"-instance", instance, "-orderly="+strconv.FormatBool(orderly), "-delay", delay.String())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = clientTimeout
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &consumerProcess{in: &goInbox{}, cmd: cmd}
	in := p.in
	read := make(chan struct{})
	closed := false
	go func() {
		defer close(read)
		dec := json.NewDecoder(stdout)
		for {
			var line struct {
				goDeliveryJSON
				Closed bool `json:"closed"`
			}
			if err := dec.Decode(&line); err != nil {
				return
			}
			if line.Closed {
				closed = true
				continue
			}
			in.add(goDelivery{id: line.ID, tag: line.Tag, queue: line.Queue, offset: line.Offset, body: line.Body,
				reconsume: line.Reconsume, at: line.At})
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-read:
		case <-time.After(2 * clientTimeout):
			_ = cmd.Process.Kill()
			<-read
		}
		err := cmd.Wait()
		if !p.killed.Load() && (err != nil || !closed) {
			t.Errorf("consumer process: exit %v, closed %v\nstderr:\n%s", err, closed, stderr.String())
		}
	})
	return p
}

// goDeliveryJSON is a delivery as orderlyconsumer prints it.
type goDeliveryJSON struct {
	ID        string `json:"id"`
	Tag       string `json:"tag"`
	Queue     string `json:"queue"`
	Offset    int64  `json:"offset"`
	Body      []byte `json:"body"`
	Reconsume int32  `json:"reconsume"`
	At        int64  `json:"at"`
}
