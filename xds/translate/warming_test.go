package translate

import (
	"testing"
)

// TestListenerWarmsUntilItsFilterConfigArrives models Envoy's rule for a network filter configured by ECDS
// (source/common/filter/config_discovery_impl.cc, FilterConfigSubscription: its init target is ready at the first
// config or when the config source's initial_fetch_timeout fires, 15 s when unset; then
// source/common/listener_manager/listener_impl.cc, ListenerImpl::createNetworkFilterChain, closes every
// connection of a listener whose filter has no config and counts network_extension_config_missing). The listener
// must therefore set the timeout, and set it to zero (wait for the config however long it takes): a node whose
// topics are still being learned, or whose first config waits for its clusters, keeps its listener warming
// rather than active and refusing every client. It sets no default config: a route table without routes would
// answer every query with an error, which is no better than no listener.
func TestListenerWarmsUntilItsFilterConfigArrives(t *testing.T) {
	l, err := Listener(ListenerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	discovery := l.GetFilterChains()[0].GetFilters()[0].GetConfigDiscovery()
	if discovery == nil {
		t.Fatal("the listener's filter is not configured by ECDS")
	}
	timeout := discovery.GetConfigSource().GetInitialFetchTimeout()
	switch {
	case timeout == nil:
		t.Fatal("config_discovery sets no initial_fetch_timeout: Envoy activates the listener without its route table after 15 s")
	case timeout.AsDuration() != 0:
		t.Fatalf("initial_fetch_timeout = %v: after it Envoy activates the listener without its route table", timeout.AsDuration())
	}
	if discovery.GetDefaultConfig() != nil || discovery.GetApplyDefaultConfigWithoutWarming() {
		t.Fatal("a default config would activate the listener with no routes")
	}
	if got := discovery.GetConfigSource().GetAds(); got == nil {
		t.Fatal("the filter config no longer comes from the ADS stream")
	}
}
