package cache

import "testing"

// TestMissingExtensionReadsEnvoysWords checks the classification against the messages Envoy writes when its build
// lacks an extension: Config::Utility::getAndCheckFactory (source/common/config/utility.h) for a typed config
// (an ECDS config, or a listener with its routes inline; an Envoy older than 1.28 sees a filter configured by ECDS
// as one with no typed config, and names no type URL), its variants naming only a name or a type, and the same
// words inside a CDS error. Anything else is the configuration's fault.
func TestMissingExtensionReadsEnvoysWords(t *testing.T) {
	const proxy = "envoy.extensions.filters.network.rocketmq_proxy.v3.RocketmqProxy"
	for _, tc := range []struct{ detail, want string }{
		{"Didn't find a registered implementation for 'rocketmq-proxy' with type URL: '" + proxy + "'", proxy},
		{"Error adding/updating listener(s) rocketmq: Didn't find a registered implementation for 'envoy.filters.network.rocketmq_proxy' with type URL: '" + proxy + "'\n", proxy},
		{"Didn't find a registered implementation for name: 'envoy.filters.network.rocketmq_proxy'", "envoy.filters.network.rocketmq_proxy"},
		{"Didn't find a registered implementation for type: '" + proxy + "'", proxy},
		{"Error adding/updating listener(s) rocketmq: Didn't find a registered implementation for 'rocketmq-proxy' with type URL: ''", "rocketmq-proxy"},
		{"Error adding/updating cluster(s) rmq-x-0123456789abcdef: Didn't find a registered implementation for name: 'envoy.clusters.x'", "envoy.clusters.x"},
		{"Error: no factory found for a required type URL " + proxy + ".", proxy},
		{"Proto constraint validation failed (RocketmqProxyValidationError.StatPrefix: value length must be at least 1 runes)", ""},
		{"route config invalid", ""},
		{"", ""},
	} {
		if got := MissingExtension(tc.detail); got != tc.want {
			t.Errorf("MissingExtension(%q) = %q, want %q", tc.detail, got, tc.want)
		}
	}
}
