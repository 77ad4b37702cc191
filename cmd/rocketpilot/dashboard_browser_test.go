package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/rocketpilot/rocketpilot/internal/browsertest"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/simbroker"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/server"
)

// TestDashboardInBrowser drives a real headless Chromium against `serve --demo`: the overview shows the demo's
// topic and proxy counts as the admin API has them; searching TopicTest leads to its chain with its brokers; a
// sidecar connecting appears on the proxies page without a reload; a NACKing client's message shows; a topic added
// at the embedded NameServer appears in the change log live. Each page is written as a screenshot (TEST_ARTIFACTS).
func TestDashboardInBrowser(t *testing.T) {
	b := browsertest.Start(t, "dashboard")
	cp := serveInProcess(t, "--demo", "--demo-namesrv-address", "127.0.0.1:0", "--poll-interval", "200ms",
		"--broker-poll-interval", "200ms", "--dashboard-chart-period", "500ms")
	xds := cp.addr(t, "serving xDS", 10*time.Second)
	admin := "http://" + cp.addr(t, "serving the admin API", time.Second)
	namesrv := cp.addr(t, "demo NameServer listening", time.Second)
	cp.waitLog(t, "routing model ready", 10*time.Second)

	// The overview: the counts the admin API has.
	var topics server.TopicList
	getAdminJSON(t, admin+"/api/v1/topics?limit=1", &topics)
	var streams []cache.StreamStatus
	getAdminJSON(t, admin+"/api/v1/proxies", &streams)
	b.Do(10*time.Second, "open the overview", chromedp.Navigate(admin+"/"))
	if got := b.Text("#topic-count"); got != strconv.Itoa(topics.Total) {
		t.Errorf("overview shows %s topics, the admin API %d", got, topics.Total)
	}
	if got := b.Text("#proxy-count"); got != strconv.Itoa(len(streams)) {
		t.Errorf("overview shows %s proxy streams, the admin API %d", got, len(streams))
	}
	b.WaitFor(5*time.Second, "the page goes live", `document.body.getAttribute("data-live-state") === "open"`)
	b.Screenshot("overview")
	// The keyboard: the first Tab reaches the skip link, which takes the focus to the content.
	b.Do(5*time.Second, "press Tab", chromedp.KeyEvent(kb.Tab))
	if got := browsertest.Eval[string](b, "document.activeElement.textContent"); got != "Skip to content" {
		t.Errorf("the first Tab focuses %q, want the skip link", got)
	}
	b.Do(5*time.Second, "press Enter", chromedp.KeyEvent(kb.Enter))
	b.WaitFor(5*time.Second, "the content has the focus", `document.activeElement.id === "main"`)

	// Search → the topic's chain, with the brokers the model has for it.
	b.Do(10*time.Second, "search TopicTest",
		chromedp.Navigate(admin+"/topics"),
		chromedp.SendKeys(chromedp.CSS("#q"), "TopicTest"),
		chromedp.Submit(chromedp.CSS("#q")),
		chromedp.WaitVisible(chromedp.CSS("#exact-match")))
	b.Screenshot("topics-search")
	b.Do(10*time.Second, "open TopicTest's chain", chromedp.Click(chromedp.CSS("#exact-match")), chromedp.WaitVisible(chromedp.CSS("#topic-name")))
	if got := b.Text("#topic-name"); got != "TopicTest" {
		t.Fatalf("the search led to %q", got)
	}
	var chain server.TopicChain
	getAdminJSON(t, admin+"/api/v1/topics/TopicTest", &chain)
	var want []string
	for _, m := range chain.Members {
		want = append(want, m.BrokerName)
	}
	if got := browsertest.Eval[[]string](b, `[...document.querySelectorAll("td.broker-name")].map(e => e.textContent)`); !slices.Equal(got, want) || len(want) < 2 {
		t.Errorf("the chain shows broker groups %v, the model %v", got, want)
	}
	if n := browsertest.Eval[int](b, `document.querySelectorAll("svg.chain g.broker").length`); n != len(want) {
		t.Errorf("the chain diagram draws %d broker groups, want %d", n, len(want))
	}
	if url := browsertest.Eval[string](b, "location.pathname"); url != "/topics/TopicTest" {
		t.Errorf("the topic's page is at %s, want its own address /topics/TopicTest", url)
	}
	b.Screenshot("topic-chain")

	// A sidecar connecting shows on the proxies page without a reload.
	b.Do(10*time.Second, "open the proxies page", chromedp.Navigate(admin+"/proxies"))
	b.WaitFor(5*time.Second, "the page goes live", `document.body.getAttribute("data-live-state") === "open"`)
	b.Do(time.Second, "mark the page", chromedp.Evaluate[chromedp.Void]("window.sameDocument = true"))
	sc := sidecarInProcess(t, "--xds-server", xds, "--node-id", "browser-sidecar")
	// Its stream names its node with its first request: an application's first route query.
	scNamesrv := sc.addr(t, "sidecar running", 5*time.Second)
	scAdmin := "http://" + sc.addr(t, "sidecar admin listening", time.Second)
	routeQuery := func(topic string) {
		t.Helper()
		if r := call(t, scNamesrv, remoting.GetRouteInfoByTopic, map[string]string{"topic": topic}, nil); r.Code != remoting.Success {
			t.Fatalf("route query for %s through the sidecar: %d %s", topic, r.Code, r.Remark)
		}
	}
	routeQuery("TopicTest")
	b.WaitFor(10*time.Second, "the sidecar appears on the proxies page",
		`document.getElementById("live").textContent.includes("browser-sidecar") && window.sameDocument === true`)

	// A NACKing client: its message shows, live, and on its own page.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nackOnce(t, ctx, xds)
	b.WaitFor(10*time.Second, "the NACK shows on the proxies page",
		`document.getElementById("live").textContent.includes("test rejects it") && window.sameDocument === true`)
	b.Screenshot("proxies")

	// The sidecar's own page: its node and routes, live as an application asks for another topic.
	sideTab := b.Tab(t)
	sideTab.Do(10*time.Second, "open the sidecar's page", chromedp.Navigate(scAdmin+"/"))
	if got := sideTab.Text("#sidecar-node"); got != "browser-sidecar" {
		t.Errorf("the sidecar's page names node %q", got)
	}
	sideTab.WaitFor(5*time.Second, "the sidecar's page goes live", `document.body.getAttribute("data-live-state") === "open"`)
	routes := sideTab.Text("#sidecar-routes")
	routeQuery("demo-orders-001")
	sideTab.WaitFor(10*time.Second, "the sidecar's page counts the new route", fmt.Sprintf(`document.getElementById("sidecar-routes").textContent !== %q`, routes))
	sideTab.Screenshot("sidecar")
	// The keyboard in a live region: a focused link stays focused however many events arrive; the region catches up
	// once the focus leaves it.
	b.Do(10*time.Second, "open the proxies page", chromedp.Navigate(admin+"/proxies"))
	b.WaitFor(5*time.Second, "the page goes live", `document.body.getAttribute("data-live-state") === "open"`)
	b.Do(time.Second, "focus a link in the live region", chromedp.Evaluate[chromedp.Void](`document.querySelector("#live a[href='/proxies/browser-sidecar']").focus()`))
	routeQuery("demo-orders-002") // the sidecar subscribes: its stream has news
	b.WaitFor(5*time.Second, "the page holds its swap", `document.body.getAttribute("data-live-state") === "held"`)
	if got := browsertest.Eval[string](b, "document.activeElement.getAttribute('href')"); got != "/proxies/browser-sidecar" {
		t.Errorf("after an event the focus is on %q, want the link it was on", got)
	}
	b.Do(5*time.Second, "move the focus out", chromedp.Evaluate[chromedp.Void](`document.querySelector("a.brand").focus()`))
	routeQuery("demo-orders-003") // news again (a background tab gets no focusout to catch up on)
	b.WaitFor(5*time.Second, "the page is live again", `document.body.getAttribute("data-live-state") === "open"`)
	b.Do(10*time.Second, "open the NACKing proxy", chromedp.Navigate(admin+"/proxies/nacking-client"), chromedp.WaitVisible(chromedp.CSS("pre.err")))
	if got := b.Text("pre.err"); got != "test rejects it" {
		t.Errorf("the proxy's page shows NACK %q", got)
	}
	b.Screenshot("proxy-nack")

	// A topic added at the embedded NameServer: a broker group registers it, and the change log shows it live.
	b.Do(10*time.Second, "open the change log", chromedp.Navigate(admin+"/changes"))
	b.WaitFor(5*time.Second, "the page goes live", `document.body.getAttribute("data-live-state") === "open"`)
	b.Do(time.Second, "mark the page", chromedp.Evaluate[chromedp.Void]("window.sameDocument = true"))
	added := "BrowserAddedTopic"
	br := simbroker.New(simbroker.Options{Addr: "127.0.0.1:0", Cluster: "DefaultCluster", Name: "broker-live",
		NameServers: []string{namesrv}, Topics: []remoting.TopicConfig{{TopicName: added, ReadQueueNums: 2, WriteQueueNums: 2, Perm: 6}}})
	if err := br.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { br.Close() })
	b.WaitFor(10*time.Second, "the new topic appears in the change log",
		fmt.Sprintf(`[...document.querySelectorAll("#live a")].some(a => a.textContent === %q) && window.sameDocument === true`, added))
	b.Screenshot("changes")

	b.Do(10*time.Second, "open the sources", chromedp.Navigate(admin+"/sources"), chromedp.WaitVisible(chromedp.CSS("table.nameservers")))
	if got := b.Text("table.nameservers tbody"); !strings.Contains(got, namesrv) || !strings.Contains(got, "Reachable") {
		t.Errorf("the sources page shows %q, want the demo NameServer %s reachable", got, namesrv)
	}
	b.Screenshot("sources")
	// The overview again, now with a sidecar, a NACK and some activity on its charts.
	b.Do(10*time.Second, "open the overview", chromedp.Navigate(admin+"/"))
	b.Screenshot("overview-busy")

	// A narrow window: the same pages, readable (nothing wider than the window but the scrollable diagram).
	b.Do(10*time.Second, "narrow window", chromedp.EmulateViewport(400, 800), chromedp.Navigate(admin+"/topics/TopicTest"))
	if w := browsertest.Eval[int](b, "document.documentElement.scrollWidth"); w > 400 {
		t.Errorf("at 400 px wide the topic page is %d px wide", w)
	}
	b.Screenshot("topic-chain-narrow")
	if os.Getenv("TEST_ARTIFACTS") == "" {
		t.Log("set TEST_ARTIFACTS to keep the screenshots")
	}
}

func getAdminJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
