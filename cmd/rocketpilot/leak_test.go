package main

import (
	"net/http"
	"testing"

	"github.com/rocketpilot/rocketpilot/internal/leakcheck"
)

// The tests' plain requests share http.DefaultTransport, whose idle keep-alive connections outlive them.
func TestMain(m *testing.M) {
	leakcheck.MainAfter(m, http.DefaultTransport.(*http.Transport).CloseIdleConnections)
}
