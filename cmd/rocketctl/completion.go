package main

import (
	"context"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rocketpilot/rocketpilot/xds/server"
)

// Shell completion (rocketctl completion bash|zsh|fish|powershell): cobra's hidden __complete command asks each
// command for the candidates of the word being typed. The names come from the admin API at --server
// (GET /api/v1/names/KIND, a page of names that start with the word); a server that cannot be reached, or does
// not know the kind, completes nothing, and says nothing: a shell's completion is no place for errors.

// completionLimit is how many names one completion asks the server for: enough to choose from, a page at 1M topics.
const completionLimit = 50

// completionTimeout bounds a completion's request whatever --request-timeout says: a shell waits for it.
const completionTimeout = 3 * time.Second

// nameKindOf maps the kinds and aliases get and describe take to the kind of names the admin API lists.
var nameKindOf = map[string]string{
	"topics": "topics", "topic": "topics", "t": "topics", "routes": "topics", "route": "topics",
	"proxies": "proxies", "proxy": "proxies",
	"clusters": "clusters", "cluster": "clusters",
	"brokersets": "brokersets", "brokerset": "brokersets", "bs": "brokersets",
}

// describeKinds are describe's kinds, completed when describe does not list them itself (ValidArgs); get lists its own.
var describeKinds = []string{"topic", "proxy", "brokerset", "cluster", "topicroute", "sidecar"}

// addCompletion registers the completion functions of the command tree under root: the names of each command's
// arguments and the values of every -o/--output.
func addCompletion(root *cobra.Command, g *globals) {
	for _, cmd := range commandTree(root) {
		if f := cmd.Flags().Lookup("output"); f != nil {
			if _, ok := cmd.GetFlagCompletionFunc("output"); !ok {
				_ = cmd.RegisterFlagCompletionFunc("output", outputCompletion(cmd))
			}
		}
		if cmd.ValidArgsFunction != nil {
			continue // the command completes itself
		}
		switch cmd.CommandPath() {
		case root.Name() + " get", root.Name() + " describe":
			kinds := describeKinds
			if len(cmd.ValidArgs) > 0 { // the command's own list, which cobra would complete instead of asking us
				kinds, cmd.ValidArgs = cmd.ValidArgs, nil
			}
			cmd.ValidArgsFunction = g.kindNameCompletion(kinds)
		case root.Name() + " proxy-status":
			cmd.ValidArgsFunction = g.positionalCompletion("proxies")
		case root.Name() + " proxy-config":
			cmd.ValidArgsFunction = g.positionalCompletion("proxies", configKindNames()...)
		case root.Name() + " resolve":
			cmd.ValidArgsFunction = g.positionalCompletion("topics")
		}
	}
}

func commandTree(cmd *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{cmd}
	for _, sub := range cmd.Commands() {
		out = append(out, commandTree(sub)...)
	}
	return out
}

// outputCompletion completes -o with the formats its usage lists ("output format: table, wide, json"), and, for
// get, kubectl's templates (completed without a space: the template follows).
func outputCompletion(cmd *cobra.Command) cobra.CompletionFunc {
	return func(c *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		usage := c.Flags().Lookup("output").Usage
		_, list, _ := strings.Cut(usage, ": ")
		var out []cobra.Completion
		for _, f := range strings.Split(list, ",") {
			if f = strings.TrimSpace(f); f != "" && !strings.Contains(f, " ") && strings.HasPrefix(f, toComplete) {
				out = append(out, f)
			}
		}
		directive := cobra.ShellCompDirectiveNoFileComp
		if cmd.Name() == "get" {
			for _, t := range []string{jsonPathOutput, customColumnsOutput} {
				if strings.HasPrefix(t, toComplete) {
					out = append(out, t)
					directive |= cobra.ShellCompDirectiveNoSpace
				}
			}
		}
		return out, directive
	}
}

// kindNameCompletion completes KIND NAME...: one of kinds first, then names of the kind, each once.
func (g *globals) kindNameCompletion(kinds []string) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) == 0 {
			return prefixed(kinds, toComplete), cobra.ShellCompDirectiveNoFileComp
		}
		if cmd.Name() == "describe" && len(args) > 1 {
			return nil, cobra.ShellCompDirectiveNoFileComp // describe takes one name
		}
		kind, ok := nameKindOf[strings.ToLower(args[0])]
		if !ok {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		names := g.completeNames(cmd.Context(), kind, toComplete)
		return slices.DeleteFunc(names, func(n string) bool { return slices.Contains(args[1:], n) }), cobra.ShellCompDirectiveNoFileComp
	}
}

// positionalCompletion completes a first argument with names of kind and a second with fixed words.
func (g *globals) positionalCompletion(kind string, second ...string) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		switch len(args) {
		case 0:
			return g.completeNames(cmd.Context(), kind, toComplete), cobra.ShellCompDirectiveNoFileComp
		case 1:
			return prefixed(second, toComplete), cobra.ShellCompDirectiveNoFileComp
		}
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
}

func prefixed(words []string, prefix string) []cobra.Completion {
	var out []cobra.Completion
	for _, w := range words {
		if strings.HasPrefix(w, prefix) {
			out = append(out, w)
		}
	}
	return out
}

// completeNames asks the admin API for the names of a kind that start with prefix; nothing on any error.
func (g *globals) completeNames(ctx context.Context, kind, prefix string) []cobra.Completion {
	if ctx == nil {
		ctx = context.Background()
	}
	quiet := *g
	if quiet.timeout <= 0 || quiet.timeout > completionTimeout {
		quiet.timeout = completionTimeout
	}
	var list server.NameList
	q := url.Values{"prefix": {prefix}, "limit": {strconv.Itoa(completionLimit)}}
	if err := quiet.getJSON(ctx, "/api/v1/names/"+kind, q, &list); err != nil {
		return nil
	}
	return list.Names
}
