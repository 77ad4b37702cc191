package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/rocketpilot/rocketpilot/workloadca"
)

// injectOptions are kube-inject's flags.
type injectOptions struct {
	file, image, controlPlane, listen string
	tls                               bool   // the sidecar reaches rocketpilot over mutual TLS, its certificate from the workload CA
	caPort                            int    // the workload CA's port on the control plane's host
	caConfigMap                       string // the ConfigMap of the CA certificate, in the workload's namespace
	caCert                            string // a file of that CA certificate: the ConfigMap is printed too
	caPEM                             []byte
}

// The names kube-inject gives what it adds, and the annotation that marks an injected pod template.
const (
	sidecarName        = "rocketpilot-sidecar"
	podinfoVolume      = "rocketpilot-podinfo"
	podinfoDir         = "/etc/rocketpilot/podinfo"
	injectedAnnotation = "rocketpilot.io/sidecar-injected"
	// sidecarLabel marks the pods that carry the sidecar: the chart's NetworkPolicy lets them (and only them, with
	// the Envoys its values name) reach xDS.
	sidecarLabel = "rocketpilot.io/sidecar"
	// caRootVolume holds the CA certificate (the ConfigMap's ca.crt), tokenVolume the projected service account
	// token the sidecar proves itself with to the workload CA.
	caRootVolume = "rocketpilot-ca-root"
	caRootDir    = "/etc/rocketpilot/ca-root"
	tokenVolume  = "rocketpilot-token"
	tokenDir     = "/var/run/secrets/rocketpilot"
	// sidecarAdminPort serves the sidecar's /healthz, /readyz and /metrics on the pod's addresses, for probes.
	sidecarAdminPort = 15021
)

func newKubeInjectCommand(g *globals) *cobra.Command {
	o := &injectOptions{}
	cmd := &cobra.Command{
		Use:   "kube-inject -f FILE",
		Short: "Add the Go sidecar to the workloads of a manifest, as istioctl kube-inject does",
		Long: `kube-inject reads Kubernetes manifests (-f FILE, or - for standard input) and prints them with the Go sidecar
added to every pod template (Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs): a native
sidecar container (an init container that keeps running) running "rocketpilot sidecar" against the control plane,
with its node id, namespace and labels from the downward API, NAMESRV_ADDR set to the sidecar in every
application container, which is where RocketMQ clients read their NameServer address, and the pod label
rocketpilot.io/sidecar=true, which the chart's NetworkPolicy admits to xDS. Other documents, and pod
templates already injected, are printed unchanged.

With --tls (the default, as the chart serves mutual TLS by default) the sidecar verifies rocketpilot with the CA
certificate of a ConfigMap in its namespace (--ca-configmap; --ca-cert FILE prints it too) and gets its client
certificate from rocketpilot's workload CA (--ca-port on the control plane's host) with a projected service
account token: it names the pod's node, which rocketpilot's identity check binds the stream to.`,
		Example: `  kubectl -n rocketmq-system get secret rocketpilot-tls -o jsonpath='{.data.ca\.crt}' | base64 -d > ca.crt
  rocketctl kube-inject -f deployment.yaml --ca-cert ca.crt | kubectl apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var in io.Reader
			switch o.file {
			case "":
				return errors.New("give the manifests with -f FILE (- for standard input)")
			case "-":
				in = cmd.InOrStdin()
			default:
				f, err := os.Open(o.file)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			src, err := io.ReadAll(in)
			if err != nil {
				return err
			}
			out, err := o.inject(src)
			if err != nil {
				return err
			}
			_, err = g.out.Write(out)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.file, "filename", "f", "", "the manifests to inject, - for standard input")
	f.StringVar(&o.image, "image", "ghcr.io/rocketpilot/rocketpilot:"+imageTag(), "the sidecar's image (the rocketpilot image)")
	f.StringVar(&o.controlPlane, "control-plane", "rocketpilot.rocketmq-system.svc:18000", "rocketpilot's xDS address, as the pods reach it")
	f.StringVar(&o.listen, "listen", "127.0.0.1:9876", "the sidecar's NameServer address, given to the applications as NAMESRV_ADDR")
	f.BoolVar(&o.tls, "tls", true, "reach rocketpilot over mutual TLS, as the chart serves it by default: the sidecar verifies it with the CA certificate of --ca-configmap and gets its own certificate from the workload CA with a projected service account token")
	f.IntVar(&o.caPort, "ca-port", 18001, "the workload CA's port, on the host of --control-plane")
	f.StringVar(&o.caConfigMap, "ca-configmap", "rocketpilot-ca-root", "the ConfigMap holding the CA certificate (ca.crt) in each workload's namespace")
	f.StringVar(&o.caCert, "ca-cert", "", "a file of the CA certificate (ca.crt of the chart's TLS Secret): the ConfigMap of --ca-configmap is printed too, in each injected workload's namespace")
	return cmd
}

// imageTag is the image tag matching this rocketctl: its version, or latest for a development build.
func imageTag() string {
	if version == "" || version == "dev" {
		return "latest"
	}
	return strings.TrimPrefix(version, "v")
}

// inject returns the documents of src with the sidecar added to every pod template.
func (o *injectOptions) inject(src []byte) ([]byte, error) {
	if o.caCert != "" {
		if !o.tls {
			return nil, errors.New("--ca-cert is for --tls")
		}
		pemBytes, err := os.ReadFile(o.caCert)
		if err != nil {
			return nil, fmt.Errorf("--ca-cert: %w", err)
		}
		o.caPEM = pemBytes
	}
	var out bytes.Buffer
	namespaces := map[string]bool{} // of the injected workloads, for the CA ConfigMaps
	for i, doc := range splitYAML(src) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var obj map[string]any
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if tmpl := podTemplate(obj); tmpl != nil {
			namespaces[nestedString(obj, "metadata", "namespace")] = true
			if err := o.injectPod(tmpl); err != nil {
				return nil, fmt.Errorf("document %d (%v %v): %w", i+1, obj["kind"], nestedString(obj, "metadata", "name"), err)
			}
			injected, err := yaml.Marshal(obj)
			if err != nil {
				return nil, err
			}
			doc = injected
		}
		if out.Len() > 0 {
			out.WriteString("---\n")
		}
		out.Write(bytes.TrimLeft(doc, "\n"))
		if !bytes.HasSuffix(doc, []byte("\n")) {
			out.WriteByte('\n')
		}
	}
	if o.caPEM != nil {
		for _, ns := range slices.Sorted(maps.Keys(namespaces)) {
			meta := map[string]any{"name": o.caConfigMap}
			if ns != "" { // else the namespace kubectl applies the workloads in
				meta["namespace"] = ns
			}
			cm, err := yaml.Marshal(map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
				"data": map[string]any{"ca.crt": string(o.caPEM)}})
			if err != nil {
				return nil, err
			}
			if out.Len() > 0 {
				out.WriteString("---\n")
			}
			out.Write(cm)
		}
	}
	return out.Bytes(), nil
}

// splitYAML splits a multi-document stream at its "---" lines.
func splitYAML(src []byte) [][]byte {
	var docs [][]byte
	var cur []byte
	for _, line := range bytes.SplitAfter(src, []byte("\n")) {
		if t := bytes.TrimRight(line, " \t\r\n"); bytes.Equal(t, []byte("---")) || bytes.HasPrefix(t, []byte("--- ")) {
			docs, cur = append(docs, cur), nil
			continue
		}
		cur = append(cur, line...)
	}
	return append(docs, cur)
}

// podTemplate returns the object holding a workload's pod metadata and spec (the object itself for a Pod), or nil.
func podTemplate(obj map[string]any) map[string]any {
	switch obj["kind"] {
	case "Pod":
		return obj
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController":
		return nestedMap(obj, "spec", "template")
	case "CronJob":
		return nestedMap(obj, "spec", "jobTemplate", "spec", "template")
	}
	return nil
}

// injectPod adds the sidecar, its downward API volume and the applications' NAMESRV_ADDR to a pod template.
func (o *injectOptions) injectPod(tmpl map[string]any) error {
	meta := ensureMap(tmpl, "metadata")
	annotations := ensureMap(meta, "annotations")
	if annotations[injectedAnnotation] == "true" {
		return nil
	}
	spec := nestedMap(tmpl, "spec")
	if spec == nil {
		return errors.New("no pod spec")
	}
	ensureMap(meta, "labels")[sidecarLabel] = "true"
	containers, _ := spec["containers"].([]any)
	if len(containers) == 0 {
		return errors.New("no containers")
	}
	for _, c := range containers {
		cm, ok := c.(map[string]any)
		if !ok {
			return errors.New("a container that is not an object")
		}
		setEnv(cm, map[string]any{"name": "NAMESRV_ADDR", "value": o.listen})
	}
	if _, _, err := net.SplitHostPort(o.listen); err != nil {
		return fmt.Errorf("--listen %q: %w", o.listen, err)
	}
	sidecar := map[string]any{
		"name":          sidecarName,
		"image":         o.image,
		"restartPolicy": "Always", // a native sidecar: started before the applications, stopped after them
		"args": []any{"sidecar", "--xds-server", o.controlPlane, "--listen", o.listen,
			"--node-id", "$(POD_NAME).$(POD_NAMESPACE)", "--labels-file", podinfoDir + "/labels",
			"--admin-address", fmt.Sprintf(":%d", sidecarAdminPort)},
		"env": []any{
			map[string]any{"name": "POD_NAME", "valueFrom": map[string]any{"fieldRef": map[string]any{"fieldPath": "metadata.name"}}},
			map[string]any{"name": "POD_NAMESPACE", "valueFrom": map[string]any{"fieldRef": map[string]any{"fieldPath": "metadata.namespace"}}},
		},
		"volumeMounts": []any{map[string]any{"name": podinfoVolume, "mountPath": podinfoDir, "readOnly": true}},
		// Probes reach the pod's IP, not its loopback: the admin port listens on every address (as Istio's 15021).
		"ports":          []any{map[string]any{"name": "sidecar-admin", "containerPort": sidecarAdminPort}},
		"startupProbe":   map[string]any{"httpGet": map[string]any{"path": "/healthz", "port": sidecarAdminPort}, "periodSeconds": 1, "failureThreshold": 30},
		"readinessProbe": map[string]any{"httpGet": map[string]any{"path": "/readyz", "port": sidecarAdminPort}, "periodSeconds": 5},
		"securityContext": map[string]any{"runAsNonRoot": true, "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
			"capabilities": map[string]any{"drop": []any{"ALL"}}},
		"resources": map[string]any{"requests": map[string]any{"cpu": "50m", "memory": "32Mi"}},
	}
	volumes, _ := spec["volumes"].([]any)
	volumes = append(volumes, map[string]any{"name": podinfoVolume, "downwardAPI": map[string]any{
		"items": []any{map[string]any{"path": "labels", "fieldRef": map[string]any{"fieldPath": "metadata.labels"}}}}})
	if o.tls {
		host, _, err := net.SplitHostPort(o.controlPlane)
		if err != nil {
			return fmt.Errorf("--control-plane %q: %w", o.controlPlane, err)
		}
		sidecar["args"] = append(sidecar["args"].([]any), "--tls-ca", caRootDir+"/ca.crt",
			"--ca-server", "https://"+net.JoinHostPort(host, strconv.Itoa(o.caPort)), "--token-file", tokenDir+"/token")
		sidecar["volumeMounts"] = append(sidecar["volumeMounts"].([]any),
			map[string]any{"name": caRootVolume, "mountPath": caRootDir, "readOnly": true},
			map[string]any{"name": tokenVolume, "mountPath": tokenDir, "readOnly": true})
		volumes = append(volumes,
			map[string]any{"name": caRootVolume, "configMap": map[string]any{"name": o.caConfigMap}},
			// A token for the workload CA only (its audience), which the kubelet renews before it expires.
			map[string]any{"name": tokenVolume, "projected": map[string]any{"sources": []any{map[string]any{"serviceAccountToken": map[string]any{
				"audience": workloadca.Audience, "expirationSeconds": 3600, "path": "token"}}}}})
	}
	spec["volumes"] = volumes
	inits, _ := spec["initContainers"].([]any)
	spec["initContainers"] = append([]any{sidecar}, inits...)
	annotations[injectedAnnotation] = "true"
	return nil
}

// setEnv sets an environment variable of a container, replacing one of the same name.
func setEnv(c map[string]any, v map[string]any) {
	env, _ := c["env"].([]any)
	for i, e := range env {
		if em, ok := e.(map[string]any); ok && em["name"] == v["name"] {
			env[i] = v
			return
		}
	}
	c["env"] = append(env, v)
}

func nestedMap(m map[string]any, path ...string) map[string]any {
	for _, k := range path {
		next, ok := m[k].(map[string]any)
		if !ok {
			return nil
		}
		m = next
	}
	return m
}

func nestedString(m map[string]any, path ...string) string {
	parent := nestedMap(m, path[:len(path)-1]...)
	s, _ := parent[path[len(path)-1]].(string)
	return s
}

func ensureMap(m map[string]any, key string) map[string]any {
	if next, ok := m[key].(map[string]any); ok {
		return next
	}
	next := map[string]any{}
	m[key] = next
	return next
}
