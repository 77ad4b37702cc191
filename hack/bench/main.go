// Command bench measures rocketpilot at scale, side by side with the design it replaces: go-control-plane's
// SnapshotCache pushing one cluster per topic to every node over state-of-the-world CDS.
//
// Everything runs in this process over loopback: the embedded NameServer with N topics over a few broker groups,
// the real watcher, routing table, cache and gRPC server, and simulated sidecars and Envoys (raw delta ADS streams
// that ACK what they get). It prints a markdown table — figure, value, goal, baseline, ratio — and with
// BENCH_JSON=FILE writes the same figures as JSON; BENCH_PLOTS=DIR draws some of them as SVG plots (make bench:
// docs/bench).
//
//	go run ./hack/bench              # the full run (make bench)
//	go run ./hack/bench -smoke       # a small run that finishes in under a minute on 2 cores (make bench-smoke)
//	go run ./hack/bench -only envoy  # Envoy-shaped streams alone: change → ECDS ACK, known and new clusters
//	go run ./hack/bench -only fanout # one route change to every stream (sidecars in child processes): gzip, none, and
//	                                 # gzip with each response encoded on its own (wire.SetEnabled(false)) as baseline
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

// Figure is one measured number.
type Figure struct {
	Name     string   `json:"name"`
	Value    float64  `json:"value"`
	Unit     string   `json:"unit"`
	Goal     string   `json:"goal"`
	Baseline *float64 `json:"baseline"`
	// lowerIsBetter orders the ratio: baseline/value when true, value/baseline otherwise.
	lowerIsBetter bool
	// at places the figure on a plot (plots.go): nil for a figure no plot shows.
	at *plotPoint
}

type config struct {
	coldTopics      []int
	streams         []int
	topicsPerStream int
	shapes          int
	churnRate       float64
	churnFor        time.Duration
	samples         int
	baselineTopics  int
	baselineNodes   int
	baselineChanges int
	envoyChanges    int           // changes of each kind in the Envoy scenario
	fanoutChanges   int           // measured changes of the fan-out's hot route, per variant
	fanoutGap       time.Duration // between one fan-out change reaching every stream and the next
	replicaTopics   int           // the replicas scenario's topics
}

func main() {
	smoke := flag.Bool("smoke", false, "a small run that finishes in under a minute on 2 cores")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	only := flag.String("only", "", "comma-separated scenarios to run (cold, ondemand, churn, reconnect, envoy, fanout, replicas, baseline; streamheap: the control plane's heap per stream alone, the sidecars in another process); all by default")
	worker := flag.Bool("sims-worker", false, "internal: run simulated sidecars for the parent process")
	replica := flag.Bool("replica-worker", false, "internal: run a control plane for the parent process (the replicas scenario)")
	streams := flag.String("streams", "", "comma-separated stream counts for the stream, Envoy and fan-out scenarios (default 1000,10000; smoke 300)")
	topics := flag.String("topics", "", "comma-separated topic counts for the cold sync (default 10000,100000,1000000; smoke 10000)")
	flag.Parse()
	if *worker {
		simsWorker(flag.Args())
		return
	}
	if *replica {
		replicaWorker(flag.Args())
		return
	}
	cfg := config{
		coldTopics: []int{10_000, 100_000, 1_000_000}, streams: []int{1_000, 10_000}, topicsPerStream: 10, shapes: 16,
		churnRate: 50, churnFor: 10 * time.Second, samples: 2_000,
		baselineTopics: 10_000, baselineNodes: 1_000, baselineChanges: 3, envoyChanges: 300,
		fanoutChanges: 20, fanoutGap: 250 * time.Millisecond, replicaTopics: 10_000,
	}
	if *smoke {
		cfg = config{
			coldTopics: []int{10_000}, streams: []int{300}, topicsPerStream: 10, shapes: 16,
			churnRate: 20, churnFor: 3 * time.Second, samples: 300,
			baselineTopics: 5_000, baselineNodes: 50, baselineChanges: 2, envoyChanges: 60,
			fanoutChanges: 5, fanoutGap: 50 * time.Millisecond, replicaTopics: 10_000,
		}
	}
	for _, f := range []struct {
		list string
		into *[]int
	}{{*streams, &cfg.streams}, {*topics, &cfg.coldTopics}} {
		if f.list == "" {
			continue
		}
		*f.into = nil
		for _, v := range strings.Split(f.list, ",") {
			n, err := strconv.Atoi(strings.ReplaceAll(strings.TrimSpace(v), "_", ""))
			if err != nil || n <= 0 {
				log.Fatalf("bad count %q: a positive integer expected", v)
			}
			*f.into = append(*f.into, n)
		}
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	want := func(s string) bool { return *only == "" || strings.Contains(","+*only+",", ","+s+",") }
	start := time.Now()
	var figs []Figure
	var base baselineResult
	if want("baseline") {
		base = runBaseline(cfg)
	}
	if want("cold") {
		figs = append(figs, coldSync(cfg, base)...)
	}
	if want("ondemand") || want("churn") || want("reconnect") || want("streamheap") {
		for _, k := range cfg.streams {
			figs = append(figs, streamScenarios(cfg, k, want, base)...)
		}
	}
	if want("envoy") {
		for _, k := range cfg.streams {
			figs = append(figs, envoyScenario(cfg, k)...)
		}
	}
	if want("fanout") {
		for _, k := range cfg.streams {
			figs = append(figs, fanout(cfg, k)...)
		}
	}
	if want("replicas") {
		figs = append(figs, replicasScenario(cfg, cfg.streams[0], cfg.replicaTopics)...)
	}
	if want("baseline") {
		figs = append(figs, base.figures()...)
	}
	printTable(figs, time.Since(start))
	if dir := os.Getenv("BENCH_PLOTS"); dir != "" {
		if err := drawPlots(dir, figs); err != nil {
			log.Fatal(err)
		}
	}
	if path := os.Getenv("BENCH_JSON"); path != "" {
		b, _ := json.MarshalIndent(figs, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

func printTable(figs []Figure, took time.Duration) {
	fmt.Printf("\nrocketpilot benchmark — %s, %d CPU, %s, took %s\n\n", runtime.Version(), runtime.NumCPU(), runtime.GOARCH, took.Round(time.Second))
	fmt.Println("| figure | value | goal | baseline | ratio |")
	fmt.Println("|---|---|---|---|---|")
	for _, f := range figs {
		base, ratio := "", ""
		if f.Baseline != nil {
			base = format(*f.Baseline, f.Unit)
			if f.Value > 0 && *f.Baseline > 0 {
				r := *f.Baseline / f.Value
				if !f.lowerIsBetter {
					r = f.Value / *f.Baseline
				}
				ratio = strconv.FormatFloat(r, 'f', 1, 64) + "×"
			}
		}
		fmt.Printf("| %s | %s | %s | %s | %s |\n", f.Name, format(f.Value, f.Unit), f.Goal, base, ratio)
	}
	fmt.Println()
}

func format(v float64, unit string) string {
	switch {
	case v == float64(int64(v)) && v < 1e15:
		return fmt.Sprintf("%d %s", int64(v), unit)
	case v >= 100:
		return fmt.Sprintf("%.0f %s", v, unit)
	default:
		return fmt.Sprintf("%.3g %s", v, unit)
	}
}

func ptr(v float64) *float64 { return &v }
