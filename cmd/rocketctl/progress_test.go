package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/internal/embeddedtest"
)

func TestRenderProgress(t *testing.T) {
	for _, c := range []struct {
		done, total int
		want        string
	}{
		{0, 100, "dump [>         ] 0/100 routes   0%"},
		{51, 100, "dump [=====>    ] 51/100 routes  51%"},
		{99, 100, "dump [=========>] 99/100 routes  99%"},
		{100, 100, "dump [==========] 100/100 routes 100%"},
		{120, 100, "dump [==========] 100/100 routes 100%"}, // never past the end
	} {
		if got := renderProgress("dump", "routes", c.done, c.total, 10); got != c.want {
			t.Errorf("%d/%d: %q, want %q", c.done, c.total, got, c.want)
		}
	}
}

func TestProgressDrawsOnATerminalOnly(t *testing.T) {
	terminal := func(io.Writer) bool { return true }
	notTerminal := func(io.Writer) bool { return false }

	var buf bytes.Buffer
	if p := newProgress(&buf, notTerminal, "dump", "routes", 10); p != nil {
		t.Fatal("a bar on a writer that is not a terminal")
	}
	var p *progress // nil: every method does nothing
	p.add(1)
	p.finish()
	if buf.Len() != 0 {
		t.Fatalf("wrote %q", buf.String())
	}

	p = newProgress(&buf, terminal, "dump", "routes", 4)
	p.width = 4
	now := time.Unix(0, 0)
	p.now = func() time.Time { return now }
	p.add(1) // drawn: the first
	p.add(1) // not drawn: too soon
	now = now.Add(redrawEvery)
	p.add(1) // drawn
	p.add(1) // drawn: the last
	p.finish()
	want := "\rdump [=>  ] 1/4 routes  25%" + "\rdump [===>] 3/4 routes  75%" + "\rdump [====] 4/4 routes 100%" +
		"\rdump [====] 4/4 routes 100%\n"
	if buf.String() != want {
		t.Fatalf("drew %q\nwant %q", buf.String(), want)
	}

	// A pipe is not a terminal; a buffer is not a file.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if stderrIsTerminal(w) || stderrIsTerminal(&buf) {
		t.Fatal("a pipe or a buffer taken for a terminal")
	}
}

// dump-namesrv counts every route on its bar when stderr is a terminal, and draws nothing when it is not.
func TestDumpNamesrvProgress(t *testing.T) {
	ns := embeddedtest.StartDemo(t)
	var bar bytes.Buffer
	var total int
	d, err := dumpNameServer(context.Background(), ns.Addr(), 4, 5*time.Second, func(n int) *progress {
		total = n
		return newProgress(&bar, func(io.Writer) bool { return true }, "dump-namesrv", "routes", n)
	})
	if err != nil {
		t.Fatal(err)
	}
	if total != ns.TopicCount() || len(d.Topics) != total {
		t.Fatalf("bar of %d, %d topics dumped, the NameServer has %d", total, len(d.Topics), ns.TopicCount())
	}
	lines := strings.Split(bar.String(), "\r")
	if last := lines[len(lines)-1]; !strings.HasSuffix(last, " routes 100%\n") || !strings.Contains(last, "] "+strconv.Itoa(total)+"/"+strconv.Itoa(total)+" ") {
		t.Fatalf("the bar ends with %q", last)
	}

	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"rocketctl", "dump-namesrv", "--namesrv", ns.Addr()}, &out, &errOut); code != 0 || errOut.Len() != 0 {
		t.Fatalf("dump-namesrv with stderr not a terminal: exit %d, stderr %q", code, errOut.String())
	}
}
