package main

import (
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// envPrefix starts the environment variable of each flag: --poll-interval is ROCKETPILOT_POLL_INTERVAL.
const envPrefix = "ROCKETPILOT_"

// envName is the environment variable of a flag.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyFlagSources sets the flags the command line left alone from the environment (ROCKETPILOT_*), then from
// the YAML file named by fileFlag (a mapping of flag names to values; lists for list flags). The command line
// wins over the environment, which wins over the file. An unknown name, in the file or in a ROCKETPILOT_
// variable, is an error: a typo must not be silently ignored.
func applyFlagSources(fs *pflag.FlagSet, fileFlag string, environ []string) error {
	known := map[string]*pflag.Flag{}
	fs.VisitAll(func(f *pflag.Flag) { known[envName(f.Name)] = f })
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix) {
			continue
		}
		f := known[name]
		if f == nil {
			if serviceLink.MatchString(name) {
				continue // Kubernetes' variables for a Service named rocketpilot, not flags
			}
			return fmt.Errorf("environment variable %s names no flag", name)
		}
		if f.Changed {
			continue
		}
		if err := fs.Set(f.Name, value); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	path := fs.Lookup(fileFlag).Value.String()
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--%s: %w", fileFlag, err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(b, &values); err != nil {
		return fmt.Errorf("--%s %s: %w", fileFlag, path, err)
	}
	for _, name := range slices.Sorted(maps.Keys(values)) {
		f := fs.Lookup(name)
		if f == nil || name == fileFlag {
			return fmt.Errorf("--%s %s: %q is not a flag of this command", fileFlag, path, name)
		}
		if f.Changed {
			continue // the command line or the environment set it
		}
		var value string
		switch v := values[name].(type) {
		case []any:
			parts := make([]string, len(v))
			for i, p := range v {
				if parts[i], err = scalar(p); err != nil {
					return fmt.Errorf("--%s %s: %s: %w", fileFlag, path, name, err)
				}
			}
			value = strings.Join(parts, ",")
		case nil:
			continue
		default:
			if value, err = scalar(v); err != nil {
				return fmt.Errorf("--%s %s: %s: %w", fileFlag, path, name, err)
			}
		}
		if err := fs.Set(name, value); err != nil {
			return fmt.Errorf("--%s %s: %s: %w", fileFlag, path, name, err)
		}
	}
	return nil
}

// serviceLink matches the variables Kubernetes sets for every Service of the namespace when the pod does not turn
// service links off: a Service named rocketpilot gives ROCKETPILOT_SERVICE_HOST, ROCKETPILOT_PORT_18000_TCP, ...
var serviceLink = regexp.MustCompile(`^[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?)$`)

// scalar is a YAML scalar as a flag's text: numbers as written (YAML decodes 16777216 as a float, which
// fmt.Sprint would print as 1.6777216e+07).
func scalar(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case map[string]any, []any:
		return "", fmt.Errorf("want a value or a list of values, not %T", v)
	}
	return fmt.Sprint(v), nil
}
