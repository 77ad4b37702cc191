// Package browsertest drives a real headless Chromium from tests (chromedp over the DevTools protocol), for the
// dashboard's browser tests, and writes screenshots as test artefacts.
//
// Chromium is Debian's `chromium` package, which `make test` installs when it is missing. A test run outside make
// on a machine without it is skipped with a message saying so, unless BROWSER_TESTS=required (the
// Makefile sets it), where a missing browser fails the test. (Not ROCKETPILOT_*: serve reads those as its flags.)
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Browser is one headless Chromium with one tab.
type Browser struct {
	Ctx context.Context
	t   *testing.T
	dir string
}

// executable finds Chromium: $CHROMIUM_PATH, or the names Debian and others install it under.
func executable() string {
	if p := os.Getenv("CHROMIUM_PATH"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless_shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Start launches Chromium for the test; it is closed when the test ends. Screenshots go to
// $TEST_ARTIFACTS/<dir> (a temporary folder when unset).
func Start(t *testing.T, dir string) *Browser {
	t.Helper()
	path := executable()
	if path == "" {
		msg := "no Chromium: install Debian's chromium package (make test does) or set CHROMIUM_PATH"
		if os.Getenv("BROWSER_TESTS") == "required" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // root in a container has no user namespaces for the sandbox
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		// This machine's network is closed: no updates, no safe-browsing lookups, no QUIC.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter"),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil { // starts the browser
		t.Fatalf("start Chromium (%s): %v", path, err)
	}
	out := filepath.Join(os.Getenv("TEST_ARTIFACTS"), dir)
	if os.Getenv("TEST_ARTIFACTS") == "" {
		out = t.TempDir()
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	return &Browser{Ctx: ctx, t: t, dir: out}
}

// Tab opens another tab of the same browser, closed when the test ends; its screenshots go where b's do.
func (b *Browser) Tab(t *testing.T) *Browser {
	ctx, cancel := chromedp.NewContext(b.Ctx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	return &Browser{Ctx: ctx, t: t, dir: b.dir}
}

// Do runs steps in the tab, failing the test with the page's text when they do not finish within d.
func (b *Browser) Do(d time.Duration, what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, d)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v\npage text:\n%s", what, err, b.pageText())
	}
}

// WaitFor polls a JavaScript predicate until it is true, failing the test after d.
func (b *Browser) WaitFor(d time.Duration, what, predicate string) {
	b.t.Helper()
	b.Do(d+time.Second, what, chromedp.Poll[chromedp.Void](predicate, chromedp.WithPollingTimeout(d), chromedp.WithPollingInterval(50*time.Millisecond)))
}

// Text is the text of the first element css selects.
func (b *Browser) Text(css string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(css)))
	if err != nil {
		b.t.Fatalf("text of %s: %v\npage text:\n%s", css, err, b.pageText())
	}
	return s
}

// Eval evaluates a JavaScript expression in the page.
func Eval[T any](b *Browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func (b *Browser) pageText() string {
	ctx, cancel := context.WithTimeout(b.Ctx, 2*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
	return s
}

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// Screenshot writes the whole page as name.png among the artefacts and returns its path.
func (b *Browser) Screenshot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100 is PNG
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(b.dir, unsafeName.ReplaceAllString(name, "_")+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", path)
	return path
}
