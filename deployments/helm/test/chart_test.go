// Package test renders the Portico Helm chart (deployments/helm/portico)
// with the real helm binary (scripts/ensure-helm.sh builds it) for the
// default values and a few value sets, runs `helm lint --strict` on each,
// and checks what a cluster would be given: every object decodes strictly
// into its Kubernetes API type (an unknown or misplaced field fails, as
// `kubectl apply --validate=strict` would), and the things that matter hold
// (selectors match pod labels, the HPA scales the data-plane Deployment,
// the PDBs select the pods they protect, every container has probes,
// resources and a locked-down security context, every Portico argument is
// a flag the binary accepts, and no token is anywhere but in the Secret).
package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const defaultHelmVersion = "v4.3.2"

var (
	repoRoot = filepath.Join("..", "..", "..")
	chartDir = filepath.Join("..", "portico")
	// binDir holds controlplane and dataplane, built once by TestMain, whose
	// -h lists the flags the chart may pass.
	binDir string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "portico-helm-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	// In the repository's workspace (this module runs with GOWORK=off).
	cmd := exec.Command("go", "build", "-o", dir+string(os.PathSeparator), "./controlplane/cmd/controlplane", "./dataplane/cmd/dataplane")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "GOWORK=")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the Portico binaries: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// helmBinary is $HELM_BIN, or the binary scripts/ensure-helm.sh caches.
func helmBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("HELM_BIN")
	if bin == "" {
		cache := os.Getenv("PORTICO_CACHE")
		if cache == "" {
			home, _ := os.UserHomeDir()
			cache = filepath.Join(home, ".cache", "portico")
		}
		v := os.Getenv("HELM_VERSION")
		if v == "" {
			v = defaultHelmVersion
		}
		bin = filepath.Join(cache, "helm-"+v)
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() {
		t.Fatalf("no helm binary at %s: run scripts/ensure-helm.sh (or make helm / make test) to build it, or point HELM_BIN at one", bin)
	}
	return bin
}

// helm runs the helm binary with a throwaway home, so no user's
// repositories or plugins take part.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(helmBinary(t), args...)
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"),
		"HELM_CACHE_HOME=" + filepath.Join(home, "cache"), "HELM_CONFIG_HOME=" + filepath.Join(home, "config"),
		"HELM_DATA_HOME=" + filepath.Join(home, "data")}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// rendered is a chart rendering, decoded.
type rendered struct {
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	services     map[string]*corev1.Service
	secrets      map[string]*corev1.Secret
	configMaps   map[string]*corev1.ConfigMap
	hpas         map[string]*autoscalingv2.HorizontalPodAutoscaler
	pdbs         map[string]*policyv1.PodDisruptionBudget
	raw          string
}

// decodeStrict converts one YAML document to JSON and decodes it into v,
// refusing unknown fields and trailing data.
func decodeStrict(doc []byte, v any) error {
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("data after the object")
	}
	return nil
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

func render(t *testing.T, sets ...string) *rendered {
	t.Helper()
	args := []string{"template", "rel", chartDir, "--namespace", "gw"}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	out, err := helm(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	r := &rendered{raw: out,
		deployments: map[string]*appsv1.Deployment{}, statefulSets: map[string]*appsv1.StatefulSet{},
		services: map[string]*corev1.Service{}, secrets: map[string]*corev1.Secret{},
		configMaps: map[string]*corev1.ConfigMap{}, hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}}
	for i, doc := range docSep.Split(out, -1) {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("document %d: %v\n%s", i, err, doc)
		}
		if head.Kind == "" {
			if strings.TrimSpace(stripComments(doc)) != "" {
				t.Errorf("document %d has no kind:\n%s", i, doc)
			}
			continue
		}
		name := head.Metadata.Name
		if name == "" || len(name) > 63 {
			t.Errorf("%s %q: name empty or longer than 63", head.Kind, name)
		}
		var obj any
		switch head.APIVersion + " " + head.Kind {
		case "apps/v1 Deployment":
			o := &appsv1.Deployment{}
			r.deployments[name], obj = o, o
		case "apps/v1 StatefulSet":
			o := &appsv1.StatefulSet{}
			r.statefulSets[name], obj = o, o
		case "v1 Service":
			o := &corev1.Service{}
			r.services[name], obj = o, o
		case "v1 Secret":
			o := &corev1.Secret{}
			r.secrets[name], obj = o, o
		case "v1 ConfigMap":
			o := &corev1.ConfigMap{}
			r.configMaps[name], obj = o, o
		case "autoscaling/v2 HorizontalPodAutoscaler":
			o := &autoscalingv2.HorizontalPodAutoscaler{}
			r.hpas[name], obj = o, o
		case "policy/v1 PodDisruptionBudget":
			o := &policyv1.PodDisruptionBudget{}
			r.pdbs[name], obj = o, o
		default:
			t.Errorf("%s %s %q: a kind this test does not know; add it to the strict decoding", head.APIVersion, head.Kind, name)
			continue
		}
		if err := decodeStrict([]byte(doc), obj); err != nil {
			t.Errorf("%s %s: not a valid %s: %v", head.Kind, name, head.Kind, err)
		}
	}
	return r
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// workload is a pod template with where it came from.
type workload struct {
	kind, name string
	selector   map[string]string
	pod        corev1.PodTemplateSpec
}

func (r *rendered) workloads() []workload {
	var ws []workload
	for n, d := range r.deployments {
		ws = append(ws, workload{"Deployment", n, d.Spec.Selector.MatchLabels, d.Spec.Template})
	}
	for n, s := range r.statefulSets {
		ws = append(ws, workload{"StatefulSet", n, s.Spec.Selector.MatchLabels, s.Spec.Template})
	}
	slices.SortFunc(ws, func(a, b workload) int { return strings.Compare(a.name, b.name) })
	return ws
}

func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// flagUsage is what "<bin> -h" lists: flag name → takes a value.
var flagUsage = map[string]map[string]bool{}

func binaryFlags(t *testing.T, bin string) map[string]bool {
	t.Helper()
	if f, ok := flagUsage[bin]; ok {
		return f
	}
	out, _ := exec.Command(filepath.Join(binDir, bin), "-h").CombinedOutput()
	re := regexp.MustCompile(`^  -([A-Za-z0-9][\w.-]*)(?: (\S+))?(?:\t.*)?$`)
	f := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			f[m[1]] = m[2] != ""
		}
	}
	if len(f) < 5 {
		t.Fatalf("%s -h listed no flags:\n%s", bin, out)
	}
	flagUsage[bin] = f
	return f
}

// porticoArgs checks args against the binary's flags and returns flag →
// value.
func porticoArgs(t *testing.T, where, bin string, args []string) map[string]string {
	t.Helper()
	known := binaryFlags(t, bin)
	vals := map[string]string{}
	for i := 0; i < len(args); i++ {
		name, val, inline := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		takes, ok := known[name]
		switch {
		case !strings.HasPrefix(args[i], "-"):
			t.Errorf("%s: argument %q is not a flag", where, args[i])
			continue
		case !ok:
			t.Errorf("%s: %s does not accept %s", where, bin, args[i])
			continue
		case takes && !inline:
			if i+1 == len(args) {
				t.Errorf("%s: %s has no value", where, args[i])
				continue
			}
			i++
			val = args[i]
		}
		vals[name] = val
	}
	return vals
}

func containerPort(c corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return -1
}

// check runs the checks every rendering must pass and returns the
// data-plane and control-plane workloads.
func check(t *testing.T, r *rendered) (dp, cp workload) {
	t.Helper()
	ws := r.workloads()
	for _, w := range ws {
		where := w.kind + " " + w.name
		if !selects(w.selector, w.pod.Labels) {
			t.Errorf("%s: selector %v does not match its pod labels %v", where, w.selector, w.pod.Labels)
		}
		spec := w.pod.Spec
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s: mounts a service account token it has no use for", where)
		}
		psc := spec.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
			t.Errorf("%s: pod not forced to run as a non-root user", where)
		}
		if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: no RuntimeDefault seccomp profile", where)
		}
		volumes := map[string]corev1.Volume{}
		for _, v := range spec.Volumes {
			volumes[v.Name] = v
		}
		claims := map[string]bool{}
		if ss, ok := r.statefulSets[w.name]; ok && w.kind == "StatefulSet" {
			for _, c := range ss.Spec.VolumeClaimTemplates {
				claims[c.Name] = true
			}
		}
		for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
			where := where + " container " + c.Name
			if c.ReadinessProbe == nil || c.LivenessProbe == nil {
				t.Errorf("%s: readiness and liveness probes required", where)
			}
			for _, pr := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
				if pr == nil {
					continue
				}
				if g := pr.HTTPGet; g != nil && containerPort(c, g.Port) < 0 {
					t.Errorf("%s: probe on port %v, which the container does not declare", where, g.Port.String())
				}
				if s := pr.TCPSocket; s != nil && containerPort(c, s.Port) < 0 {
					t.Errorf("%s: probe on port %v, which the container does not declare", where, s.Port.String())
				}
			}
			req, lim := c.Resources.Requests, c.Resources.Limits
			if req.Cpu().IsZero() || req.Memory().IsZero() || lim.Memory().IsZero() {
				t.Errorf("%s: resources %+v, want CPU and memory requests and a memory limit", where, c.Resources)
			}
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				t.Errorf("%s: security context %+v, want a read-only root filesystem, no privilege escalation, all capabilities dropped", where, sc)
			}
			if sc != nil && sc.Privileged != nil && *sc.Privileged {
				t.Errorf("%s: privileged", where)
			}
			for _, m := range c.VolumeMounts {
				if _, ok := volumes[m.Name]; !ok && !claims[m.Name] {
					t.Errorf("%s: mounts %s, which the pod does not define", where, m.Name)
				}
			}
			for _, e := range c.Env {
				if e.Value != "" && strings.Contains(strings.ToLower(e.Name), "token") {
					t.Errorf("%s: %s given in clear in the pod spec", where, e.Name)
				}
			}
		}
		switch w.pod.Labels["app.kubernetes.io/component"] {
		case "dataplane":
			dp = w
		case "controlplane":
			cp = w
		}
	}
	if dp.name == "" || cp.name == "" {
		t.Fatalf("workloads %v: want a control plane and a data plane", ws)
	}

	// Services and PDBs select pods that exist; each PDB one workload.
	for n, s := range r.services {
		ok := false
		for _, w := range ws {
			if selects(s.Spec.Selector, w.pod.Labels) {
				ok = true
				for _, p := range s.Spec.Ports {
					if p.TargetPort.Type == intstr.String && !slices.ContainsFunc(w.pod.Spec.Containers, func(c corev1.Container) bool { return containerPort(c, p.TargetPort) > 0 }) {
						t.Errorf("Service %s: port %s targets %q, which no container of %s declares", n, p.Name, p.TargetPort.StrVal, w.name)
					}
				}
			}
		}
		if !ok {
			t.Errorf("Service %s: selector %v matches no pod template", n, s.Spec.Selector)
		}
	}
	for n, p := range r.pdbs {
		var hits []string
		for _, w := range ws {
			if selects(p.Spec.Selector.MatchLabels, w.pod.Labels) {
				hits = append(hits, w.name)
			}
		}
		if len(hits) != 1 {
			t.Errorf("PodDisruptionBudget %s selects %v, want exactly one workload", n, hits)
		}
	}

	// The data plane: probes on the ops port, the real endpoints.
	dc := dp.pod.Spec.Containers[0]
	dargs := porticoArgs(t, "data plane", "dataplane", dc.Args)
	cc := cp.pod.Spec.Containers[0]
	cargs := porticoArgs(t, "control plane", "controlplane", cc.Args)
	ops := strings.TrimPrefix(dargs["ops-listen"], ":")
	if got := fmt.Sprint(containerPort(dc, dc.ReadinessProbe.HTTPGet.Port)); dc.ReadinessProbe.HTTPGet.Path != "/readyz" || got != ops {
		t.Errorf("data plane readiness %s on %s, want /readyz on the ops port %s", dc.ReadinessProbe.HTTPGet.Path, got, ops)
	}
	for name, pr := range map[string]*corev1.Probe{"liveness": dc.LivenessProbe, "control plane liveness": cc.LivenessProbe} {
		if pr.HTTPGet == nil || pr.HTTPGet.Path != "/healthz" {
			// /readyz fails while draining or cut off from the control
			// plane; a restart would only make it worse.
			t.Errorf("%s probe %+v, want GET /healthz", name, pr.HTTPGet)
		}
	}
	if g := cc.ReadinessProbe.HTTPGet; g == nil || g.Path != "/readyz" || ":"+fmt.Sprint(containerPort(cc, g.Port)) != cargs["listen"] {
		t.Errorf("control plane readiness %+v, want /readyz on --listen %s", g, cargs["listen"])
	}
	if dc.Resources.Requests.Cpu().IsZero() {
		t.Error("data plane: no CPU request, which the HPA's utilization is relative to")
	}

	// The control plane keeps its configuration in Consul KV.
	if !strings.HasPrefix(cargs["store"], "consul://") {
		t.Errorf("control plane --store %q, want the Consul KV store", cargs["store"])
	}
	// The data plane reaches the control planes through their Service.
	cpURL := dargs["controlplane"]
	found := false
	for n, s := range r.services {
		for _, p := range s.Spec.Ports {
			if cpURL == fmt.Sprintf("http://%s:%d", n, p.Port) && selects(s.Spec.Selector, cp.pod.Labels) {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("data plane --controlplane %q is not a Service port of the control planes", cpURL)
	}

	// Tokens come from files of the Secret volume, never from values in
	// the pod spec.
	for _, c := range []struct {
		w    workload
		args map[string]string
		flag []string
	}{{cp, cargs, []string{"admin-token-file", "dataplane-token-file"}}, {dp, dargs, []string{"token-file"}}} {
		for _, f := range c.flag {
			if c.args[f] == "" {
				t.Errorf("%s: no --%s", c.w.name, f)
			}
		}
		for _, f := range []string{"admin-token", "dataplane-token", "token"} {
			if _, ok := c.args[f]; ok {
				t.Errorf("%s: --%s on the command line, where `kubectl get pod -o yaml` shows it", c.w.name, f)
			}
		}
		if err := tokenFileInSecret(c.w, c.args, c.flag); err != nil {
			t.Errorf("%s: %v", c.w.name, err)
		}
	}

	// No token in any ConfigMap, Service, annotation or argument: only in
	// the Secret.
	for _, s := range r.secrets {
		for k, v := range s.Data {
			if len(v) < 32 {
				t.Errorf("Secret %s key %s: %d bytes, want at least 32", s.Name, k, len(v))
			}
			if strings.Contains(stripSecrets(r.raw), string(v)) {
				t.Errorf("Secret %s key %s appears in clear outside the Secret", s.Name, k)
			}
		}
	}
	for n, cm := range r.configMaps {
		for k, v := range cm.Data {
			if regexp.MustCompile(`(?i)token|password|secret`).MatchString(k + v) {
				t.Errorf("ConfigMap %s key %s looks like it holds a secret", n, k)
			}
		}
	}
	return dp, cp
}

// stripSecrets blanks the Secret documents of a rendering.
func stripSecrets(raw string) string {
	var keep []string
	for _, doc := range docSep.Split(raw, -1) {
		if !regexp.MustCompile(`(?m)^kind: Secret$`).MatchString(doc) {
			keep = append(keep, doc)
		}
	}
	return strings.Join(keep, "\n---\n")
}

// tokenFileInSecret: each token file flag names a file of a read-only
// mount of a Secret volume, and the key exists in that Secret's items or
// is a key the chart's Secret holds.
func tokenFileInSecret(w workload, args map[string]string, flags []string) error {
	c := w.pod.Spec.Containers[0]
	for _, f := range flags {
		path := args[f]
		var ok bool
		for _, m := range c.VolumeMounts {
			if filepath.Dir(path) != m.MountPath {
				continue
			}
			for _, v := range w.pod.Spec.Volumes {
				if v.Name == m.Name && v.Secret != nil && m.ReadOnly {
					ok = slices.Contains([]string{"admin-token", "dataplane-token"}, filepath.Base(path))
				}
			}
		}
		if !ok {
			return fmt.Errorf("--%s %s is not a key of a read-only Secret mount", f, path)
		}
	}
	return nil
}
