package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/rocketpilot/rocketpilot/xds/server"
)

// logLevelHandler reads (GET) and sets (PUT, the level as the body: debug, info, warn or error) the log level.
func logLevelHandler(level *slog.LevelVar, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
		case http.MethodPut:
			body, err := io.ReadAll(io.LimitReader(r.Body, 64))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			var l slog.Level
			if err := l.UnmarshalText([]byte(strings.TrimSpace(string(body)))); err != nil {
				http.Error(w, fmt.Sprintf("%v: want debug, info, warn or error", err), http.StatusBadRequest)
				return
			}
			log.Info("log level changed", "from", level.Level().String(), "to", l.String(), "by", server.ClientName(r))
			level.Set(l)
		default:
			w.Header().Set("Allow", "GET, PUT")
			http.Error(w, "GET or PUT", http.StatusMethodNotAllowed)
			return
		}
		fmt.Fprintln(w, strings.ToLower(level.Level().String()))
	})
}
