package test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// valueSets are the configurations the chart is rendered and linted with:
// what `helm install` gives, and the production shape (own Secret, external
// Consul and Redis, fixed replicas).
var valueSets = []struct {
	name string
	sets []string
}{
	{"defaults", nil},
	{"production", []string{
		"secrets.existingSecret=portico-prod",
		"consul.enabled=false", "consul.address=consul-server.consul.svc:8500",
		"redis.enabled=false", "redis.url=rediss://redis.example:6380/0",
		"dataplane.autoscaling.enabled=false", "dataplane.replicas=3", "dataplane.tls=false",
		"controlplane.replicas=3", "controlplane.storePrefix=gateway",
		"dataplane.service.type=LoadBalancer", "dataplane.trustedProxies=10.20.0.0/16",
	}},
	{"given tokens, no Redis, extra flags", []string{
		"secrets.adminToken=admin-0123456789abcdef0123456789abcdef",
		"secrets.dataplaneToken=dp-0123456789abcdef0123456789abcdef",
		"redis.enabled=false",
		"fullnameOverride=gw",
		"dataplane.extraArgs={--h2c,--access-log-sample,0.1}",
		"controlplane.extraArgs={--max-wait,30s}",
		"dataplane.drainDelaySeconds=20",
	}},
}

func TestChartLint(t *testing.T) {
	for _, vs := range valueSets {
		args := []string{"lint", "--strict", chartDir}
		for _, s := range vs.sets {
			args = append(args, "--set", s)
		}
		if out, err := helm(t, args...); err != nil {
			t.Errorf("%s: %v", vs.name, err)
		} else if !strings.Contains(out, "0 chart(s) failed") {
			t.Errorf("%s: helm lint:\n%s", vs.name, out)
		}
	}
}

func TestChartDefaults(t *testing.T) {
	r := render(t)
	dp, cp := check(t, r)
	args := func(w workload, bin string) map[string]string {
		return porticoArgs(t, w.name, bin, w.pod.Spec.Containers[0].Args)
	}
	dargs, cargs := args(dp, "dataplane"), args(cp, "controlplane")

	// The data planes scale on CPU: the HPA targets their Deployment,
	// which leaves the replica count to it.
	if len(r.hpas) != 1 {
		t.Fatalf("HPAs: %d, want 1", len(r.hpas))
	}
	for n, h := range r.hpas {
		ref := h.Spec.ScaleTargetRef
		if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != dp.name {
			t.Errorf("HPA %s targets %s %s/%s, want the data-plane Deployment %s", n, ref.APIVersion, ref.Kind, ref.Name, dp.name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
			t.Errorf("HPA %s: %v to %d replicas", n, h.Spec.MinReplicas, h.Spec.MaxReplicas)
		}
		cpu := false
		for _, m := range h.Spec.Metrics {
			cpu = cpu || (m.Resource != nil && m.Resource.Name == "cpu" && m.Resource.Target.AverageUtilization != nil)
		}
		if !cpu {
			t.Errorf("HPA %s: no CPU utilization metric", n)
		}
	}
	if d := r.deployments[dp.name]; d.Spec.Replicas != nil {
		t.Errorf("data-plane Deployment sets replicas (%d), which every upgrade would reset under the HPA", *d.Spec.Replicas)
	}
	// Both roles are protected from voluntary disruptions.
	protected := map[string]bool{}
	for _, p := range r.pdbs {
		for _, w := range []workload{dp, cp} {
			if selects(p.Spec.Selector.MatchLabels, w.pod.Labels) {
				protected[w.name] = true
			}
		}
	}
	if !protected[dp.name] || !protected[cp.name] {
		t.Errorf("PodDisruptionBudgets protect %v, want the data and control planes", protected)
	}
	if d := r.deployments[cp.name]; d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("control planes: %v replicas, want at least 2 (HA on Consul KV)", d.Spec.Replicas)
	}

	// The chart's Consul and Redis are what the binaries are pointed at.
	consul := serviceFor(t, r, "consul")
	if want := fmt.Sprintf("consul://%s:8500/portico", consul); cargs["store"] != want {
		t.Errorf("control plane --store %q, want %q", cargs["store"], want)
	}
	if want := consul + ":8500"; dargs["consul"] != want {
		t.Errorf("data plane --consul %q, want %q", dargs["consul"], want)
	}
	if want := fmt.Sprintf("redis://%s:6379/0", serviceFor(t, r, "redis")); dargs["redis"] != want {
		t.Errorf("data plane --redis %q, want %q", dargs["redis"], want)
	}
	if dargs["tls-listen"] == "" {
		t.Error("data plane without --tls-listen")
	}
	grace := dp.pod.Spec.TerminationGracePeriodSeconds
	if grace == nil || *grace < 10+30 {
		t.Errorf("data plane grace period %v, want at least drain delay + shutdown timeout (40s)", grace)
	}

	// A Secret made by the chart: two different random tokens.
	if len(r.secrets) != 1 {
		t.Fatalf("Secrets: %d, want the chart's one", len(r.secrets))
	}
	for _, s := range r.secrets {
		a, d := string(s.Data["admin-token"]), string(s.Data["dataplane-token"])
		if len(a) < 32 || len(d) < 32 || a == d {
			t.Errorf("generated tokens: %d and %d characters, equal %v", len(a), len(d), a == d)
		}
	}
	// Rendered again, new random tokens: nothing is hard-coded.
	for _, s := range render(t).secrets {
		for _, old := range r.secrets {
			if string(s.Data["admin-token"]) == string(old.Data["admin-token"]) {
				t.Error("two renderings made the same admin token")
			}
		}
	}
}

// serviceFor returns the Service selecting the pods of a component, which
// must exist and be unique.
func serviceFor(t *testing.T, r *rendered, component string) string {
	t.Helper()
	var names []string
	for n, s := range r.services {
		if s.Spec.Selector["app.kubernetes.io/component"] == component {
			names = append(names, n)
		}
	}
	if len(names) != 1 {
		t.Fatalf("Services of %s: %v, want one", component, names)
	}
	return names[0]
}

func TestChartProduction(t *testing.T) {
	r := render(t, valueSets[1].sets...)
	dp, cp := check(t, r)
	if len(r.secrets) != 0 {
		t.Errorf("with existingSecret the chart made Secrets %v", keys(r.secrets))
	}
	for _, w := range []workload{dp, cp} {
		for _, v := range w.pod.Spec.Volumes {
			if v.Secret != nil && v.Secret.SecretName != "portico-prod" {
				t.Errorf("%s mounts Secret %s, want existingSecret portico-prod", w.name, v.Secret.SecretName)
			}
		}
	}
	if len(r.statefulSets) != 0 || len(r.workloads()) != 2 {
		t.Errorf("workloads %v: with external Consul and Redis only the two planes", r.workloads())
	}
	if len(r.hpas) != 0 {
		t.Error("an HPA with autoscaling disabled")
	}
	if d := r.deployments[dp.name]; d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("data planes: %v replicas, want 3", d.Spec.Replicas)
	}
	dargs := porticoArgs(t, dp.name, "dataplane", dp.pod.Spec.Containers[0].Args)
	cargs := porticoArgs(t, cp.name, "controlplane", cp.pod.Spec.Containers[0].Args)
	for flag, want := range map[string]string{"store": "consul://consul-server.consul.svc:8500/gateway"} {
		if cargs[flag] != want {
			t.Errorf("control plane --%s %q, want %q", flag, cargs[flag], want)
		}
	}
	for flag, want := range map[string]string{"consul": "consul-server.consul.svc:8500", "redis": "rediss://redis.example:6380/0", "trusted-proxies": "10.20.0.0/16"} {
		if dargs[flag] != want {
			t.Errorf("data plane --%s %q, want %q", flag, dargs[flag], want)
		}
	}
	if _, ok := dargs["tls-listen"]; ok {
		t.Error("--tls-listen with dataplane.tls=false")
	}
	svc := r.services[serviceFor(t, r, "dataplane")]
	if svc.Spec.Type != "LoadBalancer" || len(svc.Spec.Ports) != 1 {
		t.Errorf("data-plane Service %s with %d ports, want LoadBalancer with http only", svc.Spec.Type, len(svc.Spec.Ports))
	}
}

func TestChartGivenTokens(t *testing.T) {
	r := render(t, valueSets[2].sets...)
	dp, cp := check(t, r)
	if !strings.HasPrefix(dp.name, "gw-") || !strings.HasPrefix(cp.name, "gw-") {
		t.Errorf("fullnameOverride: %s, %s", dp.name, cp.name)
	}
	for _, s := range r.secrets {
		if string(s.Data["admin-token"]) != "admin-0123456789abcdef0123456789abcdef" || string(s.Data["dataplane-token"]) != "dp-0123456789abcdef0123456789abcdef" {
			t.Errorf("Secret %s does not hold the given tokens", s.Name)
		}
	}
	dargs := porticoArgs(t, dp.name, "dataplane", dp.pod.Spec.Containers[0].Args)
	if _, ok := dargs["redis"]; ok {
		t.Errorf("--redis %q without Redis", dargs["redis"])
	}
	if dargs["h2c"] != "" || !slices.Contains(dp.pod.Spec.Containers[0].Args, "--h2c") || dargs["access-log-sample"] != "0.1" || dargs["drain-delay"] != "20s" {
		t.Errorf("extra data-plane flags not passed: %q", dp.pod.Spec.Containers[0].Args)
	}
	if g := dp.pod.Spec.TerminationGracePeriodSeconds; g == nil || *g < 20+30 {
		t.Errorf("grace period %v with a 20s drain delay", g)
	}
}

// Values that cannot work are refused by helm template itself, with a
// message that says why: by the templates, or by values.schema.json.
func TestChartRefuses(t *testing.T) {
	for _, tc := range []struct {
		sets []string
		want string
	}{
		{[]string{"consul.enabled=false"}, "consul.address is required"},
		{[]string{"secrets.adminToken=same-0123456789abcdef0123456789abcdef", "secrets.dataplaneToken=same-0123456789abcdef0123456789abcdef"}, "must differ"},
		// values.schema.json: a misspelt value, a wrong type, a URL where an
		// address goes, an unknown log level.
		{[]string{"dataplane.autoscalling.enabled=false"}, "additional properties 'autoscalling' not allowed"},
		{[]string{"dataplane.drainDelaySeconds=10s"}, "drainDelaySeconds"},
		{[]string{"consul.enabled=false", "consul.address=http://consul:8500"}, "/consul/address"},
		{[]string{"redis.url=localhost:6379"}, "/redis/url"},
		{[]string{"controlplane.logLevel=loud"}, "/controlplane/logLevel"},
	} {
		args := []string{"template", "rel", chartDir}
		for _, s := range tc.sets {
			args = append(args, "--set", s)
		}
		if _, err := helm(t, args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("helm template %v: %v, want a refusal with %q", tc.sets, err, tc.want)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// The release notes name objects that exist: the Secret holding the admin
// token and the control planes' Service (helm install --dry-run=client
// renders them without a cluster).
func TestChartNotes(t *testing.T) {
	for _, vs := range valueSets[:2] {
		args := []string{"install", "rel", chartDir, "--dry-run=client", "--namespace", "gw"}
		for _, s := range vs.sets {
			args = append(args, "--set", s)
		}
		out, err := helm(t, args...)
		if err != nil {
			t.Fatalf("%s: %v", vs.name, err)
		}
		_, notes, ok := strings.Cut(out, "\nNOTES:\n")
		if !ok {
			t.Fatalf("%s: no NOTES in:\n%s", vs.name, out)
		}
		r := render(t, vs.sets...)
		secret := "portico-prod"
		for n := range r.secrets {
			secret = n
		}
		for _, want := range []string{"get secret " + secret + " ", "svc/" + serviceFor(t, r, "controlplane") + " ", serviceFor(t, r, "dataplane") + " "} {
			if !strings.Contains(notes, want) {
				t.Errorf("%s: NOTES do not mention %q:\n%s", vs.name, want, notes)
			}
		}
	}
}
