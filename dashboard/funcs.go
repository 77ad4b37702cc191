package dashboard

import (
	"fmt"
	"html/template"
	"net/url"
	"strings"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/xds/cache"
)

var funcs = template.FuncMap{
	// path escapes one path segment (topic names may hold % and |).
	"path": url.PathEscape,
	// query builds a query string from key, value pairs, leaving out empty values.
	"query": func(kv ...string) template.URL {
		q := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] != "" {
				q.Set(kv[i], kv[i+1])
			}
		}
		if len(q) == 0 {
			return ""
		}
		return template.URL("?" + q.Encode())
	},
	"join":     strings.Join,
	"perm":     remoting.PermString,
	"typename": cache.TypeLabel,
	"lower":    strings.ToLower,
	"ago":      ago,
	"stamp":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
	"clock":    func(t time.Time) string { return t.UTC().Format("15:04:05.000") },
	"ms":       func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) },
	// plural is the noun for n: "topic" for 1, "topics" otherwise.
	"plural": func(n int, one, many string) string {
		if n == 1 {
			return one
		}
		return many
	},
	"plus": func(a, b int) int { return a + b },
	"more": func(total, shown int) int { return total - shown },
}

// ago says how long ago t was, in the unit a person reads at a glance; "never" for the zero time.
func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t)
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}
