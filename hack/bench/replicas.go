package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rocketpilot/rocketpilot/controlplane"
	"github.com/rocketpilot/rocketpilot/nameserver/client"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/xds/server"
)

// The replicas scenario runs R control planes, each in a process of its own (`bench -replica-worker NAMESRV MODE
// INTERVAL [LEADER]`: it prints "serving ADDR" once it serves, and runs until its stdin closes), the first
// polling the NameServer and the others following it (package peer), with the same simulated sidecars spread
// over them, and reports the NameServer's requests per second for R = 1 and R = 3 in both discovery modes.

// replicaPoll is the replicas' poll interval: short, so that a few seconds' window holds many polls of each
// topic.
const replicaPoll = 2 * time.Second

func replicaWorker(args []string) {
	if len(args) != 3 && len(args) != 4 {
		log.Fatal("usage: -replica-worker NAMESRV MODE INTERVAL [LEADER]")
	}
	interval, err := time.ParseDuration(args[2])
	if err != nil {
		log.Fatal(err)
	}
	cfg := controlplane.Config{
		Stack: server.StackConfig{Addr: "127.0.0.1:0", Server: server.Options{MaxStreams: 100_000}},
		Sources: controlplane.SourcesConfig{NameServers: []string{args[0]},
			Watch: watcher.Options{Mode: watcher.Mode(args[1]), Interval: interval, BrokerInterval: interval, Concurrency: 64, RateLimit: 1e9,
				Client: client.Options{RequestTimeout: 30 * time.Second}}},
	}
	cfg.Peer.Serve = len(args) == 3 // the leader
	if len(args) == 4 {
		leader := args[3]
		cfg.Peer = controlplane.PeerConfig{Leader: func() string { return leader },
			Dial: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cp := serveControlPlane(ctx, cfg)
	fmt.Println("serving", cp.Addr())
	bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes our stdin
	cp.Stop()
}

// replicaProcess is a -replica-worker child process that serves xDS.
type replicaProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
}

func startReplica(nsAddr string, mode watcher.Mode, leader string) *replicaProcess {
	args := []string{"-replica-worker", nsAddr, string(mode), replicaPoll.String()}
	if leader != "" {
		args = append(args, leader)
	}
	cmd := exec.Command(os.Args[0], args...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "serving ")
	if !ok {
		log.Fatalf("replica worker: %q", line)
	}
	return &replicaProcess{cmd: cmd, stdin: stdin, addr: addr}
}

func (p *replicaProcess) stop() {
	p.stdin.Close()
	p.cmd.Wait()
}

// nameServerLoad is the NameServer's requests per second (route queries, broker tables and topic lists) over a
// window.
func nameServerLoad(ns *embedded.NameServer, window time.Duration) float64 {
	count := func() int64 {
		var n int64
		for _, code := range []int32{remoting.GetRouteInfoByTopic, remoting.GetBrokerClusterInfo, remoting.GetAllTopicListFromNameServer,
			remoting.GetTopicsByCluster} {
			n += ns.RequestCount(code)
		}
		return n
	}
	before := count()
	time.Sleep(window)
	return float64(count()-before) / window.Seconds()
}

// replicasScenario measures the NameServer's load with one replica and with three, k sidecars in three child
// processes (k/3 streams each, cfg.topicsPerStream topics a stream) either all on the one replica or one process
// per replica; in all discovery and in in-use discovery.
func replicasScenario(cfg config, k, topics int) []Figure {
	ns := embedded.New(embedded.Options{})
	loadNameServer(ns, topics, cfg.shapes)
	if err := ns.Start(); err != nil {
		log.Fatal(err)
	}
	defer ns.Close()
	window := 2 * replicaPoll
	var figs []Figure
	for _, mode := range []watcher.Mode{watcher.ModeAllTopics, watcher.ModeInUse} {
		load := map[int]float64{}
		for _, r := range []int{1, 3} {
			replicas := []*replicaProcess{startReplica(ns.Addr(), mode, "")}
			for range r - 1 {
				replicas = append(replicas, startReplica(ns.Addr(), mode, replicas[0].addr))
			}
			var sims []*simsProcess
			for i := range 3 {
				sims = append(sims, startSimsProcess(replicas[i%r].addr, strconv.Itoa(k/3), strconv.Itoa(cfg.topicsPerStream), strconv.Itoa(topics)))
			}
			time.Sleep(replicaPoll) // every topic in use polled once at least
			load[r] = nameServerLoad(ns, window)
			log.Printf("replicas: %s discovery, R = %d, %d streams: %.0f NameServer requests per second", mode, r, k, load[r])
			for _, s := range sims {
				s.stop()
			}
			for _, p := range replicas {
				p.stop()
			}
		}
		base := load[1]
		figs = append(figs,
			Figure{Name: fmt.Sprintf("NameServer requests per second, %s discovery, %d topics polled every %v, %d streams: 1 replica", mode, topics, replicaPoll, k),
				Value: load[1], Unit: "req/s", lowerIsBetter: true},
			Figure{Name: fmt.Sprintf("NameServer requests per second, %s discovery, 3 replicas (the same streams spread over them)", mode),
				Value: load[3], Unit: "req/s", Goal: fmt.Sprintf("≤ 1.25× one replica's (%.0f)", 1.25*base), Baseline: &base, lowerIsBetter: true})
	}
	return figs
}
