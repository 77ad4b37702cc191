package controllers

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/rocketpilot/rocketpilot/crds/v1alpha1"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/routing"
)

// FuzzFileDocument feeds arbitrary documents to the file source's decoder: it never panics, and a document it
// accepts converts into the model's types, and encoded again is accepted again (validation is a fixed point).
func FuzzFileDocument(f *testing.F) {
	examples, _ := filepath.Glob(filepath.Join("..", "examples", "*.yaml"))
	for _, e := range examples {
		if b, err := os.ReadFile(e); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("apiVersion: rocketpilot.io/v1alpha1\nkind: TopicRoute\nmetadata: {name: x}\nspec: {topics: {regex: \"a(\"}}"))
	f.Add([]byte("kind: [unclosed"))
	table := routing.NewTable()
	fs := &FileSource{table: table, sources: NewSources(table, watcher.Options{}, nil), policies: NewPolicies(table)}
	var err error
	if fs.validator, err = NewValidator(); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		st, obj := fs.decode(context.Background(), doc)
		if obj == nil {
			if st.Accepted {
				t.Fatal("accepted without an object")
			}
			return
		}
		switch o := obj.(type) {
		case *v1alpha1.TopicRoute:
			PolicyOf(o) // may fail (a regex), must not panic
		case *v1alpha1.TopicBinding:
			// The schema checks a selector's operators and values; what only the label parser knows (a key's
			// syntax) fails here, and the reconcilers report it as Invalid, naming the selector.
			if _, err := BindingOf(o); err != nil && !strings.Contains(err.Error(), "podSelector") {
				t.Fatalf("an accepted binding does not convert: %v", err)
			}
		case *v1alpha1.NameServerSource:
			SourceSpecOf(o, o.Spec.Addresses)
		}
		again, err := yaml.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		if st2, obj2 := fs.decode(context.Background(), again); obj2 == nil {
			t.Fatalf("accepted, then rejected once encoded again: %s\n%s", st2.Error, again)
		}
	})
}
