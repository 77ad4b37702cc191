package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/rocketpilot/rocketpilot/crds/v1alpha1"
)

// kubeFlags reach the Kubernetes API, as kubectl's do.
type kubeFlags struct {
	kubeconfig    string
	context       string
	namespace     string
	allNamespaces bool
}

func (k *kubeFlags) addFlags(f *pflag.FlagSet) {
	f.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file ($KUBECONFIG and ~/.kube/config when empty)")
	f.StringVar(&k.context, "context", "", "kubeconfig context (the current one when empty)")
	f.StringVarP(&k.namespace, "namespace", "n", "", "namespace (the context's when empty)")
	f.BoolVarP(&k.allNamespaces, "all-namespaces", "A", false, "every namespace")
}

// client returns a Kubernetes client for rocketpilot's kinds and the namespace to list ("" with -A).
func (k *kubeFlags) client() (client.Client, string, error) {
	cfg, ns, err := k.restConfig()
	if err != nil {
		return nil, "", err
	}
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, "", err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	return c, ns, err
}

// listKube lists a kind, or gets the named objects.
func listKube(ctx context.Context, g *globals, list client.ObjectList, names []string) ([]client.Object, string, error) {
	c, ns, err := g.kube.client()
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := g.withTimeout(ctx)
	defer cancel()
	if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
		return nil, "", fmt.Errorf("list from the Kubernetes API: %w", err)
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return nil, "", err
	}
	var out []client.Object
	for _, it := range items {
		o := it.(client.Object)
		if len(names) == 0 || slices.Contains(names, o.GetName()) {
			out = append(out, o)
		}
	}
	slices.SortFunc(out, func(a, b client.Object) int {
		return strings.Compare(a.GetNamespace()+"/"+a.GetName(), b.GetNamespace()+"/"+b.GetName())
	})
	for _, n := range names {
		if !slices.ContainsFunc(out, func(o client.Object) bool { return o.GetName() == n }) {
			return nil, "", fmt.Errorf("%q not found in namespace %q", n, ns)
		}
	}
	return out, ns, nil
}

// printKube prints Kubernetes objects: their printer columns as a table, or the objects.
func printKube(g *view, kind string, objs []client.Object, allNamespaces bool, headers []string, cells func(client.Object) []string) error {
	if done, err := printData(g, objs, kind+".rocketpilot.io", func(o client.Object) string { return o.GetName() }); done {
		return err
	}
	t := &table{headers: append([]string{"NAME"}, headers...)}
	if allNamespaces {
		t.headers = append([]string{"NAMESPACE"}, t.headers...)
	}
	t.headers = append(t.headers, "AGE")
	now := time.Now()
	for _, o := range objs {
		row := append([]string{o.GetName()}, cells(o)...)
		if allNamespaces {
			row = append([]string{o.GetNamespace()}, row...)
		}
		t.add(append(row, age(o.GetCreationTimestamp().Time, now))...)
	}
	return g.printTable(t)
}

func conditionStatus(conds []metav1.Condition, kind string) string {
	if c := meta.FindStatusCondition(conds, kind); c != nil {
		return string(c.Status)
	}
	return "Unknown"
}

// kubeColumns are the printer columns of each custom-resource kind, by kind, after NAME.
var kubeColumns = map[string]struct {
	headers []string
	cells   func(client.Object) []string
}{
	"NameServerSource": {[]string{"READY", "TOPICS", "BROKERS", "LAST SYNC"}, func(o client.Object) []string {
		s := o.(*v1alpha1.NameServerSource)
		last := "<never>"
		if s.Status.LastSyncTime != nil {
			last = age(s.Status.LastSyncTime.Time, time.Now())
		}
		return []string{conditionStatus(s.Status.Conditions, v1alpha1.ConditionReady), strconv.Itoa(int(s.Status.Topics)),
			strconv.Itoa(int(s.Status.Brokers)), last}
	}},
	"TopicRoute": {[]string{"ACCEPTED", "RESOLVED", "TOPICS"}, func(o client.Object) []string {
		r := o.(*v1alpha1.TopicRoute)
		return []string{conditionStatus(r.Status.Conditions, v1alpha1.ConditionAccepted),
			conditionStatus(r.Status.Conditions, v1alpha1.ConditionResolved), strconv.Itoa(int(r.Status.MatchedTopics))}
	}},
	"TopicBinding": {[]string{"ACCEPTED", "PROXIES"}, func(o client.Object) []string {
		b := o.(*v1alpha1.TopicBinding)
		return []string{conditionStatus(b.Status.Conditions, v1alpha1.ConditionAccepted), strconv.Itoa(int(b.Status.BoundProxies))}
	}},
}

// getKube lists a custom-resource kind from the Kubernetes API and prints its printer columns.
func getKube(ctx context.Context, g *globals, f *getFlags, kind string, list client.ObjectList, names []string) error {
	objs, ns, err := listKube(ctx, g, list, names)
	if err != nil {
		return err
	}
	return printKube(f.view(g), strings.ToLower(kind), objs, ns == "", kubeColumns[kind].headers, kubeColumns[kind].cells)
}

func getNameServerSources(ctx context.Context, g *globals, f *getFlags, names []string) error {
	return getKube(ctx, g, f, "NameServerSource", &v1alpha1.NameServerSourceList{}, names)
}

func getTopicRoutes(ctx context.Context, g *globals, f *getFlags, names []string) error {
	return getKube(ctx, g, f, "TopicRoute", &v1alpha1.TopicRouteList{}, names)
}

func getTopicBindings(ctx context.Context, g *globals, f *getFlags, names []string) error {
	return getKube(ctx, g, f, "TopicBinding", &v1alpha1.TopicBindingList{}, names)
}
