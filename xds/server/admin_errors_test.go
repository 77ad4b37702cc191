package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
)

// Requests that cannot be answered are 400s with a JSON reason: a topic name no topic can have (not a 404, as for a
// topic that could exist), a config dump without its node.
func TestAdminRefusesBadRequests(t *testing.T) {
	s := startStack(t, embedded.LoadDemo)
	srv := httptest.NewServer((&Admin{Table: s.table, Cache: s.cache, Version: "test"}).Handler())
	defer srv.Close()
	client := srv.Client()
	defer client.CloseIdleConnections()
	for path, want := range map[string]string{
		"/api/v1/topics/bad%20name!":                 `topic "bad name!" has ' ' at byte 3`,
		"/api/v1/routes/bad%20name!":                 `topic "bad name!" has ' ' at byte 3`,
		"/api/v1/config_dump":                        "config_dump needs ?node=NODE_ID",
		"/api/v1/topics/" + strings.Repeat("t", 200): "characters long",
	} {
		resp, err := client.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e ErrorBody
		if resp.StatusCode != http.StatusBadRequest || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error, want) {
			t.Errorf("GET %s: %d %s; want 400 with %q", path, resp.StatusCode, body, want)
		}
	}
	// A valid name the model does not hold is still a 404.
	resp, err := client.Get(srv.URL + "/api/v1/topics/NoSuchTopic")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET an unknown topic: %d", resp.StatusCode)
	}
}

// clientGone says so only once its context ended, and looks at it every 4096 calls.
func TestClientGone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	gone := clientGone(ctx)
	for i := range 5000 {
		if gone() {
			t.Fatalf("gone at call %d with the context alive", i+1)
		}
	}
	cancel()
	calls := 0
	for !gone() {
		if calls++; calls > 4096 {
			t.Fatal("not gone within 4096 calls of the context's end")
		}
	}
}
