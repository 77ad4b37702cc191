package main

import (
	"fmt"
	"log"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/wire"
)

// fanoutPool is how many topics the fan-out's NameServer holds: the hot topic and the others the streams hold
// besides (they share them; what matters here is the one topic they all hold).
const fanoutPool = 10_000

// fanoutVariant is one way the fan-out is served: a control plane's response compression, and whether package
// wire encodes a response's resources once for every stream (shared) or each response on its own.
type fanoutVariant struct {
	name   string
	shared bool
	cp     *controlPlane
	sims   *simsProcess
	routes [2][]routing.Member // the hot topic's two routes, which the changes alternate between
	source string              // the NameServer's source in cp's table
	change int                 // changes made to cp's table so far (both of its variants')
	wire   int64               // what the sims had received at the last change, on the wire and as protobuf
	bytes  int64

	lat               []time.Duration
	cpu               time.Duration
	wireSum, bytesSum int64
	reconnects        int
}

// fanout measures one route change reaching k streams that all hold it: from the table write until every stream
// has received it (each ACKs at once, on receipt, as in churn). The streams are sims in a child process per
// control plane, each subscribed to the hot topic's route and cfg.topicsPerStream-1 others. Two control planes
// run side by side, one compressing its responses with gzip and one not (--xds-compression none); the gzip one
// is measured twice, encoding a response's resources once for all streams (package wire) and each response on
// its own (wire.SetEnabled(false), as the server did before package wire), the latter as the baseline of the
// former's figures. The hot topic's route flips cfg.fanoutChanges times per variant between its own broker set
// and the next topic's (route only: every stream holds both clusters after two warm-up changes), the variants'
// changes interleaved; each starts once the last has reached every stream, cfg.fanoutGap has passed and this
// process is idle again. The CPU of a change is this process's getrusage (the control plane; the sims are
// children) from the table write until it is idle again: the ACKs and the collection of the change's garbage
// included.
func fanout(cfg config, k int) []Figure {
	ns := embedded.New(embedded.Options{})
	loadNameServer(ns, fanoutPool, cfg.shapes)
	if err := ns.Start(); err != nil {
		log.Fatal(err)
	}
	defer ns.Close()
	hot := topicName(0)

	var planes []*fanoutVariant // one per control plane: its sims, table and routes
	for _, compression := range []string{"gzip", "none"} {
		cp, _ := startControlPlaneWith(ns.Addr(), "", compression)
		defer cp.stop()
		v := &fanoutVariant{cp: cp, source: cp.table.TopicSources(hot)[0].Source}
		// topic-0000001 has the next route shape: a broker set as real and as referenced as the hot topic's own.
		v.routes[0] = slices.Clone(cp.table.Topic(hot).BrokerSet.Members)
		v.routes[1] = slices.Clone(cp.table.Topic(topicName(1)).BrokerSet.Members)
		start := time.Now()
		v.sims = startSimsProcess(cp.addr, strconv.Itoa(k), strconv.Itoa(cfg.topicsPerStream), strconv.Itoa(fanoutPool), hot)
		defer v.sims.stop()
		log.Printf("fan-out: %d streams on the %s control plane synced in %v", k, compression, time.Since(start).Round(time.Millisecond))
		planes = append(planes, v)
	}
	gzipShared, noneShared := planes[0], planes[1]
	gzipShared.name, gzipShared.shared = "gzip", true
	noneShared.name, noneShared.shared = "none", true
	gzipEach := &fanoutVariant{name: "gzip, each response encoded on its own"}
	variants := []*fanoutVariant{gzipShared, gzipEach, noneShared}
	defer wire.SetEnabled(true)

	// change flips the hot topic's route on plane p and waits until every stream has it; it returns how long
	// that took and the report, false when not every stream had it within the timeout.
	change := func(p *fanoutVariant) (time.Duration, fanoutReport, bool) {
		p.change++
		t0 := time.Now()
		p.cp.table.Apply(p.source, routing.Update{Topic: hot, Route: &routing.Route{Members: p.routes[p.change%2]}})
		r, ok := p.sims.waitChange(p.change, time.Minute)
		return time.Duration(r.at - t0.UnixNano()), r, ok // the worker's wall clock: the same machine's
	}
	for _, p := range planes { // both sets' clusters and endpoints come to every stream once
		for range 2 {
			if _, r, ok := change(p); !ok {
				log.Fatalf("fan-out: a warm-up change did not reach all %d streams", k)
			} else {
				p.wire, p.bytes = r.wire, r.bytes
			}
		}
	}
	settle(cfg.fanoutGap)

	for range cfg.fanoutChanges {
		for _, v := range variants {
			p := v
			if v == gzipEach {
				p = gzipShared
			}
			wire.SetEnabled(v.shared)
			var ru0, ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			took, r, ok := change(p)
			settle(cfg.fanoutGap) // the ACKs, and the garbage the change made, are the change's cost too
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			wire.SetEnabled(true)
			if !ok { // the worker counts versions per stream: past a lost one, its counts would not be the changes
				log.Fatalf("fan-out (%s): change %d did not reach all %d streams", v.name, p.change, k)
			}
			v.lat = append(v.lat, took)
			v.cpu += time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
			v.wireSum += r.wire - p.wire
			v.bytesSum += r.bytes - p.bytes
			v.reconnects = r.reconnects
			p.wire, p.bytes = r.wire, r.bytes
		}
	}

	kk := human(k)
	goal := ""
	if k == 10_000 {
		goal = "≤ 100 ms"
	}
	var figs []Figure
	stat := func(v *fanoutVariant) (p50, p99, cpu, wire, bytes float64) {
		n := len(v.lat)
		per := float64(max(n, 1))
		return ms(pct(v.lat, 0.5)), ms(pct(v.lat, 0.99)), ms(time.Duration(float64(v.cpu) / per)),
			round(float64(v.wireSum)/per/float64(k), 0), round(float64(v.bytesSum)/per/float64(k), 0)
	}
	for _, v := range variants {
		p50, p99, cpu, w, b := stat(v)
		log.Printf("fan-out %s, %s streams: %d changes, each reached every stream; p50 %.2f ms, p99 %.2f ms, CPU %.1f ms per change, "+
			"%.0f B per stream on the wire (%.0f as protobuf), %d reconnects", v.name, kk, len(v.lat), p50, p99, cpu, w, b, v.reconnects)
	}
	b50, b99, bcpu, bwire, _ := stat(gzipEach)
	for _, v := range []*fanoutVariant{gzipShared, noneShared} {
		p50, p99, cpu, w, b := stat(v)
		var base50, base99, basecpu, basewire *float64
		how, series, baseSeries := "no compression", "no compression", ""
		if v == gzipShared {
			base50, base99, basecpu, basewire = ptr(b50), ptr(b99), ptr(bcpu), ptr(bwire)
			how = "gzip (baseline: each response encoded on its own, wire.SetEnabled(false))"
			series, baseSeries = "gzip, encoded once", "gzip, each response on its own"
		}
		figs = append(figs,
			Figure{at: &plotPoint{plot: plotFanout, series: series + ", p50", x: float64(k), baseline: ifSet(baseSeries, ", p50")},
				Name:  fmt.Sprintf("fan-out: one route change → every stream has it and ACKs, p50, %s streams, %s", kk, how),
				Value: p50, Unit: "ms", Baseline: base50, lowerIsBetter: true},
			Figure{at: &plotPoint{plot: plotFanout, series: series + ", p99", x: float64(k), baseline: ifSet(baseSeries, ", p99")},
				Name:  fmt.Sprintf("fan-out: one route change → every stream has it and ACKs, p99, %s streams, %s", kk, how),
				Value: p99, Unit: "ms", Goal: goal, Baseline: base99, lowerIsBetter: true},
			Figure{Name: fmt.Sprintf("fan-out: CPU per change, control-plane process only (its getrusage; the sidecars are child processes), %s streams, %s", kk, how),
				Value: cpu, Unit: "ms", Baseline: basecpu, lowerIsBetter: true},
			Figure{Name: fmt.Sprintf("fan-out: bytes on the wire per stream per change, %s streams, %s", kk, how),
				Value: w, Unit: "B", Baseline: basewire, lowerIsBetter: true},
			Figure{Name: fmt.Sprintf("  the same responses as protobuf, %s streams, %s", kk, v.name), Value: b, Unit: "B", lowerIsBetter: true},
		)
	}
	return figs
}

// settle waits at least gap, then until this process is idle: less than a tenth of a core busy over 25 ms (for
// at most 10 s). The server handles the streams' ACKs after they have the change; a change's CPU ends there.
func settle(gap time.Duration) {
	time.Sleep(gap)
	busy := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	const window = 25 * time.Millisecond
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
		b0 := busy()
		time.Sleep(window)
		if busy()-b0 < window/10 {
			return
		}
	}
	log.Printf("fan-out: the control plane still busy 10 s after a change")
}

// fanoutReport is a sims worker's line for a change of the hot topic's route that has reached every stream.
type fanoutReport struct {
	change      int
	at          int64 // when the last stream received it (Unix ns)
	wire, bytes int64 // received by all streams so far
	reconnects  int
}

// waitChange reads the worker's reports until the one for change c, or until timeout; it returns the last
// report read.
func (p *simsProcess) waitChange(c int, timeout time.Duration) (fanoutReport, bool) {
	if p.reports == nil {
		p.reports = make(chan fanoutReport, 1024)
		go func() {
			defer close(p.reports)
			for {
				line, err := p.out.ReadString('\n')
				if err != nil {
					return
				}
				var r fanoutReport
				if _, err := fmt.Sscanf(strings.TrimSpace(line), "change %d %d %d %d %d", &r.change, &r.at, &r.wire, &r.bytes, &r.reconnects); err != nil {
					log.Printf("sims worker: %q", line)
					continue
				}
				p.reports <- r
			}
		}()
	}
	var last fanoutReport
	deadline := time.After(timeout)
	for {
		select {
		case r, ok := <-p.reports:
			if !ok {
				log.Fatal("sims worker: ended")
			}
			last = r
			if r.change >= c {
				return r, r.change == c
			}
		case <-deadline:
			log.Printf("fan-out: change %d did not reach every stream within %v", c, timeout)
			return last, false
		}
	}
}
