package main

import (
	"fmt"
	"maps"
	"os"
	"slices"
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
				parts[i] = fmt.Sprint(p)
			}
			value = strings.Join(parts, ",")
		case nil:
			continue
		default:
			value = fmt.Sprint(v)
		}
		if err := fs.Set(name, value); err != nil {
			return fmt.Errorf("--%s %s: %s: %w", fileFlag, path, name, err)
		}
	}
	return nil
}
