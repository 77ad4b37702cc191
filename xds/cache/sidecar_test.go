package cache

import "testing"

// TestMissingExtensionReadsEnvoysWords checks the classification against the messages Envoy writes when its build
// lacks an extension: Config::Utility::getAndCheckFactory (source/common/config/utility.h) for a typed config
// (an ECDS config, or a listener with its routes inline), its variants naming only a name or a type, and the
// filter config provider manager (source/common/filter/config_discovery_impl.cc) for a listener whose
// config_discovery names a type URL no factory serves. Anything else is the configuration's fault.
func TestMissingExtensionReadsEnvoysWords(t *testing.T) {
	const proxy = "envoy.extensions.filters.network.rocketmq_proxy.v3.RocketmqProxy"
	for _, tc := range []struct{ detail, want string }{
		{"Didn't find a registered implementation for 'rocketmq-proxy' with type URL: '" + proxy + "'", proxy},
		{"Error adding/updating listener(s) rocketmq: Didn't find a registered implementation for 'envoy.filters.network.rocketmq_proxy' with type URL: '" + proxy + "'\n", proxy},
		{"Didn't find a registered implementation for name: 'envoy.filters.network.rocketmq_proxy'", "envoy.filters.network.rocketmq_proxy"},
		{"Didn't find a registered implementation for type: '" + proxy + "'", proxy},
		{"Error: no factory found for a required type URL " + proxy + ".", proxy},
		{"Error adding/updating listener(s) rocketmq: Error: no factory found for a required type URL " + proxy + ".\n", proxy},
		{"Proto constraint validation failed (RocketmqProxyValidationError.StatPrefix: value length must be at least 1 runes)", ""},
		{"route config invalid", ""},
		{"", ""},
	} {
		if got := MissingExtension(tc.detail); got != tc.want {
			t.Errorf("MissingExtension(%q) = %q, want %q", tc.detail, got, tc.want)
		}
	}
}
