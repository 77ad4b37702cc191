package dashboard

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// sample is one period of the charts: what happened in it.
type sample struct {
	At      time.Time
	Pushes  uint64 // xDS responses sent
	NACKs   uint64 // xDS responses rejected
	Changes uint64 // writes to the model (model versions moved)
}

// recorder keeps the last samples in a ring and signals each new one.
type recorder struct {
	mu      sync.Mutex
	samples []sample
	max     int
	last    sample // the running totals at the last sample
	started bool
	added   signal
}

func newRecorder(max int) *recorder { return &recorder{max: max} }

// run takes a sample of totals every period until ctx ends; totals returns the running counts.
func (r *recorder) run(ctx context.Context, every time.Duration, totals func() sample) {
	r.record(totals())
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.record(totals())
		}
	}
}

// record turns running totals into one period's counts (the first call only sets the baseline).
func (r *recorder) record(total sample) {
	r.mu.Lock()
	if r.started {
		s := sample{At: total.At, Pushes: total.Pushes - r.last.Pushes, NACKs: total.NACKs - r.last.NACKs,
			Changes: total.Changes - r.last.Changes}
		if len(r.samples) == r.max {
			r.samples = append(r.samples[:0], r.samples[1:]...)
		}
		r.samples = append(r.samples, s)
	}
	r.last, r.started = total, true
	r.mu.Unlock()
	r.added.Fire()
}

func (r *recorder) snapshot() []sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sample(nil), r.samples...)
}

// sample reads the running totals the charts draw.
func (d *Dashboard) sample() sample {
	pushes, nacks := d.cfg.Admin.Cache.Totals()
	return sample{At: time.Now().UTC(), Pushes: pushes, NACKs: nacks, Changes: d.cfg.Admin.Table.Version()}
}

// minEventGap is the least time between two events of one client: a burst of changes is one event, and a page
// re-renders at most this often. After a "proxies" event the gap is proxiesEventGap: with thousands of streams
// some stream has news all the time, and re-reading every stream's state four times a second per open page would
// cost more than a page is worth.
const (
	minEventGap     = 250 * time.Millisecond
	proxiesEventGap = time.Second
)

// events serves server-sent events to a page: "change" when the model changed (the change log recorded a
// change), "proxies" when a stream opened, closed, was sent a response or decided on one, "sample" when the
// charts have a new sample. ?kinds= lists the ones the page wants (every kind when empty). Each event's data is
// the model version. Events coalesce: a client gets at most one per minEventGap, so a busy model costs a page one
// refresh per gap, never a queue.
func (d *Dashboard) events(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	want := map[string]bool{}
	for k := range strings.SplitSeq(r.URL.Query().Get("kinds"), ",") {
		switch k {
		case "change", "proxies", "sample":
			want[k] = true
		case "":
		default:
			http.Error(w, fmt.Sprintf("unknown event kind %q: the kinds are change, proxies and sample", k), http.StatusBadRequest)
			return
		}
	}
	if len(want) == 0 {
		want = map[string]bool{"change": true, "proxies": true, "sample": true}
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	fmt.Fprintf(w, "retry: 2000\n: rocketpilot dashboard events\n\n")
	flusher.Flush()
	a := d.cfg.Admin
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	// Each feed is armed before its event is written, so that what changes while the client is sent one event or
	// waits out the gap is the next event, never lost.
	var changes, streams, samples <-chan struct{}
	arm := func(kind string) {
		switch {
		case kind == "change" && want["change"] && a.Changes != nil:
			changes = a.Changes.Changed()
		case kind == "proxies" && want["proxies"]:
			streams = a.Cache.StreamsChanged()
		case kind == "sample" && want["sample"]:
			samples = d.recorder.added.Wait()
		}
	}
	for _, k := range []string{"change", "proxies", "sample"} {
		arm(k)
	}
	for {
		var kind string
		select {
		case <-r.Context().Done():
			return
		case <-keepalive.C:
			fmt.Fprint(w, ": keepalive\n\n")
			flusher.Flush()
			continue
		case <-changes:
			kind = "change"
		case <-streams:
			kind = "proxies"
		case <-samples:
			kind = "sample"
		}
		arm(kind)
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %d\n\n", kind, a.Table.Version()); err != nil {
			return
		}
		flusher.Flush()
		gap := minEventGap
		if kind == "proxies" {
			gap = proxiesEventGap
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(gap):
		}
	}
}
