package controllers

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/rocketpilot/rocketpilot/crds/v1alpha1"
	"github.com/rocketpilot/rocketpilot/routing"
)

// FileSource reads NameServerSources, TopicRoutes and TopicBindings from the YAML files of a directory (*.yaml
// and *.yml, several documents each, as kubectl apply takes them), validates each with its CRD's schema and CEL
// rules (Validator), and applies the valid ones to the same Sources and Policies the reconcilers feed. It follows
// changes by looking at the files every interval.
//
// A document that does not validate is reported and skipped, and the resources its file last defined validly
// stay as they were, so a typo in a file loses nothing that was served.
type FileSource struct {
	dir       string
	sources   *Sources
	policies  *Policies
	table     *routing.Table
	validator *Validator
	log       *slog.Logger
	// Offline validates NameServerSources without watching them (a dry run of translation has its routes
	// from elsewhere).
	Offline bool

	mu          sync.Mutex
	fingerprint string
	applied     map[string]fileResource // by kind/namespace/name: the last valid version
	report      []FileResourceStatus
	objects     []runtime.Object // the typed object of each report entry, nil when it did not decode
}

type fileResource struct {
	kind, key, file string
}

// FileResourceStatus is one document of the directory as last read.
type FileResourceStatus struct {
	File      string `json:"file"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Accepted is false when the document was rejected; Error says why.
	Accepted bool   `json:"accepted"`
	Error    string `json:"error,omitempty"`
	// Status is what the resource's status would be on an API server.
	Status any `json:"status,omitempty"`
}

// NewFileSource returns a file source for dir.
func NewFileSource(dir string, table *routing.Table, sources *Sources, policies *Policies, log *slog.Logger) (*FileSource, error) {
	if st, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("config directory %s: %w", dir, err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("config directory %s: a file, not a directory (give the directory that holds it)", dir)
	}
	v, err := NewValidator()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &FileSource{dir: dir, sources: sources, policies: policies, table: table, validator: v, log: log,
		applied: map[string]fileResource{}}, nil
}

// Run follows the directory until ctx ends: every interval it looks at the files, and loads them once they have
// stayed the same for one interval, so that a file caught half-written is never applied.
func (f *FileSource) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		files, fingerprint, err := f.read()
		if err != nil {
			f.log.Error("config directory", "dir", f.dir, "err", err)
			continue
		}
		f.mu.Lock()
		applied := f.fingerprint
		f.mu.Unlock()
		if fingerprint != last || fingerprint == applied {
			last = fingerprint // changed since the last look: wait until it holds still
			continue
		}
		f.apply(ctx, files, fingerprint) // the very bytes that held still, not a read after them
	}
}

// Load reads the directory and applies what changed since the last Load. It returns an error only when the
// directory cannot be read; rejected documents are logged and reported by Status.
func (f *FileSource) Load(ctx context.Context) error {
	files, fingerprint, err := f.read()
	if err != nil {
		return err
	}
	f.apply(ctx, files, fingerprint)
	return nil
}

// apply applies the files read with that fingerprint.
func (f *FileSource) apply(ctx context.Context, files map[string][]byte, fingerprint string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fingerprint == f.fingerprint {
		f.refreshStatus()
		return
	}
	f.fingerprint = fingerprint
	seen := map[string]bool{}
	type entry struct {
		st  FileResourceStatus
		obj runtime.Object
	}
	var entries []entry
	for _, file := range slices.Sorted(maps.Keys(files)) {
		docs, err := splitDocuments(files[file])
		if err == nil && len(docs) == 0 {
			err = errors.New("no documents: an empty file is taken for one being written, and what it defined is kept")
		}
		if err != nil {
			entries = append(entries, entry{st: FileResourceStatus{File: file, Error: err.Error()}})
			f.log.Error("config file", "file", file, "err", err)
			continue
		}
		for _, doc := range docs {
			st, obj := f.decode(ctx, doc)
			st.File = file
			id := st.Kind + "/" + st.Namespace + "/" + st.Name
			if obj != nil && seen[id] {
				st.Accepted, st.Error, obj = false, "defined twice: the first definition is used", nil
			}
			if obj != nil {
				seen[id] = true
			}
			entries = append(entries, entry{st: st, obj: obj})
		}
	}
	// Sources first, then policies and bindings, so that their status sees the sources' model.
	for pass := range 2 {
		for i := range entries {
			e := &entries[i]
			if !e.st.Accepted {
				continue
			}
			var err error
			switch o := e.obj.(type) {
			case *v1alpha1.NameServerSource:
				switch {
				case pass != 0, f.Offline:
				case o.Spec.NameServiceRef != nil:
					err = fmt.Errorf("spec.nameServiceRef needs the Kubernetes API (serve --kubernetes): give addresses in a file")
				default:
					err = f.sources.Set(keyOf(o), SourceSpecOf(o, o.Spec.Addresses))
				}
			case *v1alpha1.TopicRoute:
				if pass == 1 {
					err = ApplyTopicRoute(f.policies, f.table, o, hashOf(o.Spec))
				}
			case *v1alpha1.TopicBinding:
				if pass == 1 {
					err = ApplyTopicBinding(f.policies, f.table, o, hashOf(o.Spec))
				}
			}
			if err != nil {
				e.st.Accepted, e.st.Error = false, err.Error()
				continue
			}
			f.applied[e.st.Kind+"/"+e.st.Namespace+"/"+e.st.Name] = fileResource{kind: e.st.Kind, key: e.st.Namespace + "/" + e.st.Name,
				file: e.st.File}
		}
	}
	// A file with a rejected document keeps every resource it last defined validly: a typo (in a kind, a name,
	// the YAML itself) must not withdraw what was served.
	rejected := map[string]bool{}
	for _, e := range entries {
		if !e.st.Accepted {
			rejected[e.st.File] = true
		}
	}
	for id, r := range f.applied {
		if rejected[r.file] {
			seen[id] = true
		}
	}
	report := make([]FileResourceStatus, len(entries))
	objects := make([]runtime.Object, len(entries))
	for i, e := range entries {
		report[i], objects[i] = e.st, e.obj
		if !e.st.Accepted {
			f.log.Error("config resource rejected", "file", e.st.File, "kind", e.st.Kind, "name", e.st.Name, "err", e.st.Error)
		}
	}
	for id, r := range f.applied {
		if seen[id] {
			continue
		}
		switch r.kind {
		case "NameServerSource":
			f.sources.Remove(r.key)
		case "TopicRoute":
			f.policies.SetRoute(r.key, "", nil)
		case "TopicBinding":
			f.policies.SetBinding(r.key, "", nil)
		}
		delete(f.applied, id)
		f.log.Info("config resource removed", "resource", id)
	}
	f.report, f.objects = report, objects
	f.refreshStatus()
}

// decode validates one document and returns its report and typed object (nil when rejected).
func (f *FileSource) decode(ctx context.Context, doc []byte) (FileResourceStatus, runtime.Object) {
	// As the API server decodes: integers stay integers (int64), which the schema and CEL types expect.
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return FileResourceStatus{Error: err.Error()}, nil
	}
	var raw map[string]any
	if err := utiljson.Unmarshal(js, &raw); err != nil || raw == nil {
		return FileResourceStatus{Error: fmt.Sprintf("not a YAML object: %v", err)}, nil
	}
	st := FileResourceStatus{Kind: str(raw["kind"])}
	md, _ := raw["metadata"].(map[string]any)
	st.Name, st.Namespace = str(md["name"]), str(md["namespace"])
	if st.Namespace == "" {
		st.Namespace = "default"
		if md != nil {
			md["namespace"] = st.Namespace
		}
	}
	if err := f.validator.Validate(ctx, raw); err != nil {
		st.Error = err.Error()
		return st, nil
	}
	var obj runtime.Object
	switch st.Kind {
	case "NameServerSource":
		obj = &v1alpha1.NameServerSource{}
	case "TopicRoute":
		obj = &v1alpha1.TopicRoute{}
	case "TopicBinding":
		obj = &v1alpha1.TopicBinding{}
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, obj); err != nil {
		st.Error = err.Error()
		return st, nil
	}
	st.Accepted = true
	return st, obj
}

// refreshStatus fills each accepted document's status from the model, as the reconcilers would (counts and
// reachability move with it).
func (f *FileSource) refreshStatus() {
	for i := range f.report {
		st := &f.report[i]
		switch o := f.objects[i].(type) {
		case *v1alpha1.NameServerSource:
			fillSourceStatus(o, f.sources, len(o.Spec.Addresses) > 0, "")
			st.Status = o.Status
		case *v1alpha1.TopicRoute:
			if st.Accepted {
				fillTopicRouteStatus(o, f.table)
			}
			st.Status = o.Status
		case *v1alpha1.TopicBinding:
			if st.Accepted {
				fillTopicBindingStatus(o, f.policies, f.table)
			}
			st.Status = o.Status
		}
	}
}

// Status returns the documents of the last Load, each with its acceptance and status.
func (f *FileSource) Status() []FileResourceStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshStatus()
	return slices.Clone(f.report)
}

// read returns the directory's YAML files by name and a fingerprint of their content.
func (f *FileSource) read() (map[string][]byte, string, error) {
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", f.dir, err)
	}
	files := map[string][]byte{}
	h := sha256.New()
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(f.dir, name)) // follows symlinks, as a mounted ConfigMap needs
		if err != nil {
			return nil, "", fmt.Errorf("read %s: %w", name, err)
		}
		files[name] = b
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(b))
		h.Write(b)
	}
	return files, hex.EncodeToString(h.Sum(nil)), nil
}

// splitDocuments splits a YAML stream into its non-empty documents.
func splitDocuments(b []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var out [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			out = append(out, doc)
		}
	}
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(out, line...)
		}
	}
	return out
}

func hashOf(v any) string {
	b, _ := yaml.Marshal(v)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
