package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"

	"github.com/portico-gw/portico/shared/secretfile"
)

// No Docker engine runs where the tests run, so the deployment files are
// checked against what they describe instead: the binaries' own usage text
// (flags and env twins), the Dockerfile's stages, and the configuration
// files they mount. A renamed flag or a moved file then fails `make test`
// rather than the first `docker compose up` or `kubectl apply`.

// Binaries built from deployments/docker/Dockerfile.
var porticoBinaries = []string{"controlplane", "dataplane", "demo-upstream", "demo-soap", "demo-grpc"}

// composeOneShotLabel marks compose services that run to completion (the
// seed job); every other service is long-running and must say how its
// health is known.
const composeOneShotLabel = "portico.one-shot"

func deployRepoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// binaryUsageInfo is what a binary's -h output says it accepts.
type binaryUsageInfo struct {
	flags map[string]bool // flag name → takes a value (false: boolean)
	env   map[string]bool // env twins, e.g. PORTICO_LISTEN
}

var (
	binaryUsageMu    sync.Mutex
	binaryUsageCache = map[string]binaryUsageInfo{}

	// flag.PrintDefaults: "  -name type" for flags taking a value, "  -name"
	// for booleans; usage text follows on the next line, after a tab.
	binaryUsageFlag = regexp.MustCompile(`^  -([A-Za-z0-9][\w.-]*)(?: (\S+))?(?:\t.*)?$`)
	binaryUsageEnv  = regexp.MustCompile(`\(env ([A-Z][A-Z0-9_]*)\)`)
)

func parseBinaryUsage(text string) binaryUsageInfo {
	u := binaryUsageInfo{flags: map[string]bool{}, env: map[string]bool{}}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if m := binaryUsageFlag.FindStringSubmatch(sc.Text()); m != nil {
			u.flags[m[1]] = m[2] != ""
		}
		for _, m := range binaryUsageEnv.FindAllStringSubmatch(sc.Text(), -1) {
			u.env[m[1]] = true
		}
	}
	return u
}

// binaryUsage runs "<bin> [subcommand] -h" from binDir (built by TestMain)
// and parses it.
func binaryUsage(t *testing.T, bin string, sub ...string) binaryUsageInfo {
	t.Helper()
	binaryUsageMu.Lock()
	defer binaryUsageMu.Unlock()
	key := strings.Join(append([]string{bin}, sub...), " ")
	if u, ok := binaryUsageCache[key]; ok {
		return u
	}
	// -h exits non-zero (flag.ErrHelp); only the text matters.
	out, _ := exec.Command(filepath.Join(binDir, bin), append(sub, "-h")...).CombinedOutput()
	u := parseBinaryUsage(string(out))
	if len(u.flags) == 0 || len(u.env) == 0 {
		t.Fatalf("%s -h listed no flags or env twins:\n%s", key, out)
	}
	binaryUsageCache[key] = u
	return u
}

// binaryFlagErrors checks args as Go's flag package would parse them: "--foo",
// "--foo=bar" or "--foo bar" (the next argument is the value unless foo is
// a boolean). The binaries take no positional arguments.
func binaryFlagErrors(args []string, u binaryUsageInfo) []string {
	var errs []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-" || a == "--" || !strings.HasPrefix(a, "-") {
			errs = append(errs, fmt.Sprintf("%q is not a flag (no positional arguments are accepted)", a))
			continue
		}
		name, _, inline := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		takesValue, ok := u.flags[name]
		switch {
		case !ok:
			errs = append(errs, fmt.Sprintf("unknown flag %q", a))
			// Its value, if it has one, is not a second error.
			if !inline && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				i++
			}
		case takesValue && !inline && i+1 == len(args):
			errs = append(errs, fmt.Sprintf("flag %q is missing its value", a))
		case takesValue && !inline:
			i++
		}
	}
	return errs
}

// binaryFlagValues returns the values given to flags taking one, by flag name.
func binaryFlagValues(args []string, u binaryUsageInfo) map[string]string {
	vals := map[string]string{}
	for i := 0; i < len(args); i++ {
		name, val, inline := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(args[i], "-"), "-"), "=")
		if !u.flags[name] {
			continue
		}
		if !inline && i+1 < len(args) {
			i++
			val = args[i]
		}
		vals[name] = val
	}
	return vals
}

// binaryListenPorts returns the ports of every --*listen flag in args.
func binaryListenPorts(t *testing.T, args []string, u binaryUsageInfo) map[string]string {
	t.Helper()
	ports := map[string]string{}
	for name, val := range binaryFlagValues(args, u) {
		if !strings.HasSuffix(name, "listen") {
			continue
		}
		_, port, err := net.SplitHostPort(val)
		if err != nil {
			t.Errorf("--%s %q: %v", name, val, err)
			continue
		}
		ports[name] = port
	}
	return ports
}

func binaryEnvErrors(names []string, u binaryUsageInfo) []string {
	var errs []string
	for _, n := range names {
		if (strings.HasPrefix(n, "PORTICO_") || strings.HasPrefix(n, "DEMO_")) && !u.env[n] {
			errs = append(errs, fmt.Sprintf("environment variable %s is not read by the binary", n))
		}
	}
	return errs
}

// TestComposeFlagChecker keeps the checks below from passing vacuously.
func TestComposeFlagChecker(t *testing.T) {
	u := binaryUsage(t, "dataplane")
	if !u.flags["ops-listen"] || u.flags["dev"] || !u.env["PORTICO_OPS_LISTEN"] {
		t.Fatalf("usage parsed wrongly: %+v", u)
	}
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"--listen", ":8080", "--ops-listen=:8081", "-redis", "redis://r:6379/0"}, true},
		{[]string{"--access-log-sample", "0.5", "--trusted-proxies", "10.0.0.0/8"}, true},
		{[]string{"--no-such-flag", "x"}, false},
		{[]string{"--listen"}, false},
		{[]string{"--listen", ":1", "stray"}, false},
	} {
		if errs := binaryFlagErrors(tc.args, u); (len(errs) == 0) != tc.ok {
			t.Errorf("binaryFlagErrors(%q) = %q, want ok=%v", tc.args, errs, tc.ok)
		}
	}
	cp := binaryUsage(t, "controlplane")
	if errs := binaryFlagErrors([]string{"--dev", "--listen", ":9000"}, cp); len(errs) != 0 {
		t.Errorf("a boolean flag took the next argument as its value: %q", errs)
	}
	if errs := binaryEnvErrors([]string{"PORTICO_ADMIN_TOKEN", "PORTICO_NOPE", "OTEL_SERVICE_NAME"}, cp); len(errs) != 1 {
		t.Errorf("binaryEnvErrors = %q, want exactly PORTICO_NOPE refused", errs)
	}
}

// dockerfile is the part of a Dockerfile these checks need.
type dockerfile struct {
	args       map[string]string // global ARG defaults (before the first FROM)
	stages     []dockerStage
	stageNames map[string]int
}

type dockerStage struct {
	name, base string
	entrypoint []string
}

var (
	dfFrom  = regexp.MustCompile(`(?i)^FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$`)
	dfArg   = regexp.MustCompile(`(?i)^ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(\S*))?$`)
	dfEntry = regexp.MustCompile(`(?i)^ENTRYPOINT\s+(\[.*\])$`)
	dfVar   = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)
)

func parseDockerfile(t *testing.T, file string) dockerfile {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	df := dockerfile{args: map[string]string{}, stageNames: map[string]int{}}
	var logical []string
	var cur strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue // comments, parser directives, and comments inside a continued instruction
		}
		if s, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		if l := strings.TrimSpace(cur.String()); l != "" {
			logical = append(logical, l)
		}
		cur.Reset()
	}
	for _, l := range logical {
		if m := dfFrom.FindStringSubmatch(l); m != nil {
			df.stages = append(df.stages, dockerStage{base: m[1], name: strings.ToLower(m[2])})
			if m[2] != "" {
				df.stageNames[strings.ToLower(m[2])] = len(df.stages) - 1
			}
			continue
		}
		if m := dfArg.FindStringSubmatch(l); m != nil && len(df.stages) == 0 {
			df.args[m[1]] = m[2]
			continue
		}
		if m := dfEntry.FindStringSubmatch(l); m != nil && len(df.stages) > 0 {
			var ep []string
			if err := json.Unmarshal([]byte(m[1]), &ep); err != nil {
				t.Errorf("%s: ENTRYPOINT %s is not exec form: %v", file, m[1], err)
			}
			df.stages[len(df.stages)-1].entrypoint = ep
		}
	}
	if len(df.stages) == 0 {
		t.Fatalf("%s: no FROM", file)
	}
	return df
}

// entrypoint returns the ENTRYPOINT of the stage built for target ("" = the
// last stage), following stages built FROM other stages, with buildArgs
// overriding the Dockerfile's global ARG defaults.
func (df dockerfile) entrypoint(target string, buildArgs map[string]string) ([]string, error) {
	i := len(df.stages) - 1
	if target != "" {
		var ok bool
		if i, ok = df.stageNames[strings.ToLower(target)]; !ok {
			return nil, fmt.Errorf("no stage named %q", target)
		}
	}
	for range df.stages {
		st := df.stages[i]
		if st.entrypoint != nil {
			return st.entrypoint, nil
		}
		base := dfVar.ReplaceAllStringFunc(st.base, func(v string) string {
			name := dfVar.FindStringSubmatch(v)[1]
			if val, ok := buildArgs[name]; ok {
				return val
			}
			return df.args[name]
		})
		next, ok := df.stageNames[strings.ToLower(base)]
		if !ok {
			return nil, fmt.Errorf("stage %q sets no ENTRYPOINT and its base %q is not a stage", st.name, base)
		}
		i = next
	}
	return nil, fmt.Errorf("FROM cycle at stage %q", target)
}

// haproxyConfig maps each section header ("backend dataplanes") to its lines,
// without comments.
func haproxyConfig(t *testing.T, file string) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string][]string{}
	var cur string
	for _, line := range strings.Split(string(raw), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			cur = strings.Join(strings.Fields(line), " ")
			sections[cur] = nil
			continue
		}
		sections[cur] = append(sections[cur], strings.Join(strings.Fields(line), " "))
	}
	return sections
}

func haproxyLine(lines []string, prefix string) (string, bool) {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return l, true
		}
	}
	return "", false
}

// composeBindSource returns the host path mounted at target in svc.
func composeBindSource(svc types.ServiceConfig, target string) (string, bool) {
	for _, v := range svc.Volumes {
		if v.Type == types.VolumeTypeBind && v.Target == target {
			return v.Source, true
		}
	}
	return "", false
}

func composeOneShot(svc types.ServiceConfig) bool { return svc.Labels[composeOneShotLabel] == "true" }

func loadCompose(t *testing.T, root string) *types.Project {
	t.Helper()
	// .env.example stands in for the operator's .env: every ${VAR:?} must
	// resolve from it, so the example documents every required variable.
	// The test's own environment is deliberately not consulted.
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnvFiles(filepath.Join(root, ".env.example")),
		cli.WithDotEnv,
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return p
}

func composeServices(p *types.Project) []types.ServiceConfig {
	names := make([]string, 0, len(p.Services))
	for n := range p.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]types.ServiceConfig, 0, len(names))
	for _, n := range names {
		out = append(out, p.Services[n])
	}
	return out
}

func composeEnvNames(m types.MappingWithEquals) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// TestComposeFile checks docker-compose.yml without running Docker.
func TestComposeFile(t *testing.T) {
	root := deployRepoRoot(t)
	p := loadCompose(t, root)

	// Every variable the file interpolates is documented in .env.example.
	raw, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(filepath.Join(root, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)`).FindAllStringSubmatch(string(raw), -1) {
		if !regexp.MustCompile(`(?m)^#?\s*` + m[1] + `=`).Match(example) {
			t.Errorf("docker-compose.yml uses ${%s}, which .env.example does not document", m[1])
		}
	}

	binOf := map[string]string{} // service → Portico binary it runs
	for _, svc := range composeServices(p) {
		name := svc.Name
		if svc.Build != nil {
			if fi, err := os.Stat(svc.Build.Context); err != nil || !fi.IsDir() {
				t.Errorf("%s: build context %s is not a directory", name, svc.Build.Context)
				continue
			}
			df := svc.Build.Dockerfile
			if !filepath.IsAbs(df) {
				df = filepath.Join(svc.Build.Context, df)
			}
			if _, err := os.Stat(df); err != nil {
				t.Errorf("%s: Dockerfile: %v", name, err)
				continue
			}
			if df != filepath.Join(root, "deployments", "docker", "Dockerfile") {
				continue
			}
			buildArgs := map[string]string{}
			for k, v := range svc.Build.Args {
				if v != nil {
					buildArgs[k] = *v
				}
			}
			ep, err := parseDockerfile(t, df).entrypoint(svc.Build.Target, buildArgs)
			if err != nil {
				t.Errorf("%s: target %q: %v", name, svc.Build.Target, err)
				continue
			}
			if len(ep) != 1 || !slices.Contains(porticoBinaries, path.Base(ep[0])) {
				t.Errorf("%s: image entrypoint %q is not one Portico binary", name, ep)
				continue
			}
			bin := path.Base(ep[0])
			if len(svc.Entrypoint) > 0 {
				t.Errorf("%s: overrides the entrypoint; the checks below assume the binary runs", name)
			}
			binOf[name] = bin
		}

		// Health: long-running services state how it is known; one-shot
		// jobs are not restarted and publish nothing.
		if composeOneShot(svc) {
			if svc.Restart != "" && svc.Restart != types.RestartPolicyNo && !strings.HasPrefix(svc.Restart, "on-failure") {
				t.Errorf("%s: one-shot job with restart %q", name, svc.Restart)
			}
			if len(svc.Ports) > 0 {
				t.Errorf("%s: one-shot job publishes ports", name)
			}
		} else {
			hc := svc.HealthCheck
			if hc == nil || hc.Disable || len(hc.Test) < 2 || (hc.Test[0] != "CMD" && hc.Test[0] != "CMD-SHELL") {
				t.Errorf("%s: long-running service without a healthcheck (CMD or CMD-SHELL)", name)
			}
			if svc.Restart != types.RestartPolicyUnlessStopped && svc.Restart != types.RestartPolicyAlways {
				t.Errorf("%s: long-running service with restart %q, want unless-stopped or always", name, svc.Restart)
			}
		}

		for dep, d := range svc.DependsOn {
			target, ok := p.Services[dep]
			if !ok {
				t.Errorf("%s: depends on unknown service %s", name, dep)
				continue
			}
			switch d.Condition {
			case types.ServiceConditionHealthy:
				if target.HealthCheck == nil || target.HealthCheck.Disable {
					t.Errorf("%s: waits for %s to be healthy, which has no healthcheck", name, dep)
				}
			case types.ServiceConditionCompletedSuccessfully:
				if !composeOneShot(target) {
					t.Errorf("%s: waits for %s to complete, which is not labelled %s", name, dep, composeOneShotLabel)
				}
			default:
				t.Errorf("%s: depends on %s with condition %q; want service_healthy or service_completed_successfully", name, dep, d.Condition)
			}
		}

		// Files and directories mounted from the repository exist (Docker
		// would otherwise create an empty directory in their place).
		for _, v := range svc.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if rel, err := filepath.Rel(root, v.Source); err != nil || strings.HasPrefix(rel, "..") {
				t.Errorf("%s: bind mount %s is outside the repository", name, v.Source)
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s: mounted %v", name, err)
			}
		}
	}

	// Services running Portico binaries: flags, env twins, health probes.
	for _, want := range porticoBinaries {
		if !slices.Contains(deployValues(binOf), want) {
			t.Errorf("no service runs %s", want)
		}
	}
	for _, name := range deployKeys(binOf) {
		svc, bin := p.Services[name], binOf[name]
		if len(svc.Command) > 0 && !strings.HasPrefix(svc.Command[0], "-") {
			// A subcommand: only the secrets step runs one (checked below).
			if bin != "controlplane" || svc.Command[0] != "init-secrets" || !composeOneShot(svc) {
				t.Errorf("%s (%s): runs subcommand %q; only a one-shot controlplane init-secrets is expected", name, bin, svc.Command[0])
			}
			continue
		}
		u := binaryUsage(t, bin)
		for _, e := range binaryFlagErrors(svc.Command, u) {
			t.Errorf("%s (%s) command: %s", name, bin, e)
		}
		for _, e := range binaryEnvErrors(composeEnvNames(svc.Environment), u) {
			t.Errorf("%s (%s): %s", name, bin, e)
		}
		ports := binaryListenPorts(t, svc.Command, u)
		if len(ports) == 0 {
			t.Errorf("%s: the command sets no --listen address, so its probe cannot be checked", name)
		}
		if hc := svc.HealthCheck; hc != nil && len(hc.Test) > 0 {
			want := "/usr/local/bin/" + bin
			if len(hc.Test) != 4 || hc.Test[0] != "CMD" || hc.Test[1] != want || hc.Test[2] != "probe" {
				t.Errorf("%s: healthcheck %q, want [CMD %s probe <url>] (the image has no shell)", name, hc.Test, want)
				continue
			}
			pu, err := url.Parse(hc.Test[3])
			if err != nil || pu.Hostname() != "127.0.0.1" || !slices.Contains(deployValues(ports), pu.Port()) {
				t.Errorf("%s: probe URL %q is not on a port the command listens on (%v)", name, hc.Test[3], ports)
			}
		}
	}

	dpName := composeServiceRunning(t, binOf, "dataplane")
	dp := p.Services[dpName]
	if dp.ContainerName != "" {
		t.Errorf("%s: container_name %q prevents --scale", dpName, dp.ContainerName)
	}
	for _, port := range dp.Ports {
		if port.Published != "" {
			t.Errorf("%s: publishes host port %s, which prevents --scale", dpName, port.Published)
		}
	}
	dpPorts := binaryListenPorts(t, dp.Command, binaryUsage(t, "dataplane"))
	trafficPort, opsPort := dpPorts["listen"], dpPorts["ops-listen"]

	// The front load balancer: host port 8080, and a HAProxy config that
	// finds every data-plane replica and health-checks its /readyz.
	var lb []string
	for _, svc := range composeServices(p) {
		for _, port := range svc.Ports {
			if port.Published == "8080" {
				lb = append(lb, svc.Name)
				if port.Target != 8080 {
					t.Errorf("%s: host 8080 goes to container port %d", svc.Name, port.Target)
				}
			}
		}
	}
	if len(lb) != 1 {
		t.Fatalf("services publishing host port 8080: %v, want exactly the front load balancer", lb)
	}
	lbSvc := p.Services[lb[0]]
	cfgPath, ok := composeBindSource(lbSvc, "/usr/local/etc/haproxy/haproxy.cfg")
	if !ok {
		t.Fatalf("%s: no haproxy.cfg mounted at /usr/local/etc/haproxy/haproxy.cfg", lb[0])
	}
	checkHAProxy(t, haproxyConfig(t, cfgPath), dpName, trafficPort, opsPort)

	checkPrometheus(t, p, opsPort)
	checkGrafana(t, p, root)
	checkSecrets(t, p, binOf)
}

// imageUsers are the users the images of docker-compose.yml run as when the
// service sets none: the Portico images' (Dockerfile: USER 65532:65532) and
// Grafana's.
var imageUsers = map[string]string{"grafana/grafana": "472"}

// checkSecrets: one secrets-init job writes every secret into one volume,
// each file owned by the user of the services that read it; readers mount
// it read-only, name only files it makes, and start after it; no other
// service is handed a secret in its environment.
func checkSecrets(t *testing.T, p *types.Project, binOf map[string]string) {
	t.Helper()
	var initName string
	for _, n := range deployKeys(binOf) {
		if c := p.Services[n].Command; len(c) > 0 && c[0] == "init-secrets" {
			if initName != "" {
				t.Fatalf("two services run init-secrets: %s and %s", initName, n)
			}
			initName = n
		}
	}
	if initName == "" {
		t.Fatal("no service runs controlplane init-secrets")
	}
	job := p.Services[initName]
	flags, specs := secretsInitArgs(t, job.Command)
	dir := flags["dir"]
	var volume string
	for _, v := range job.Volumes {
		if v.Target == dir && v.Type == types.VolumeTypeVolume && !v.ReadOnly {
			volume = v.Source
		}
	}
	if volume == "" {
		t.Fatalf("%s: --dir %q is not a named volume mounted read-write", initName, dir)
	}
	owners := map[string]int{} // file → owning uid
	envs := map[string]bool{}
	for _, sp := range specs {
		owners[sp.Name] = sp.UID
		if sp.Env != "" {
			envs[sp.Env] = true
			if _, ok := job.Environment[sp.Env]; !ok {
				t.Errorf("%s: secret %s overridable by %s, which the service's environment does not pass", initName, sp.Name, sp.Env)
			}
		}
	}
	for _, e := range composeEnvNames(job.Environment) {
		if !envs[e] {
			t.Errorf("%s: environment %s is no secret's override", initName, e)
		}
	}
	if job.User != "0:0" && job.User != "0" && job.User != "root" {
		t.Errorf("%s: runs as %q; it must be root to give each file its reader", initName, job.User)
	}

	readers := 0
	for _, svc := range composeServices(p) {
		if svc.Name == initName {
			continue
		}
		for _, e := range composeEnvNames(svc.Environment) {
			if envs[e] || e == "GF_SECURITY_ADMIN_PASSWORD" {
				t.Errorf("%s: gets %s in its environment; secrets go through files of the %s volume", svc.Name, e, volume)
			}
		}
		var target string
		for _, v := range svc.Volumes {
			if v.Type == types.VolumeTypeVolume && v.Source == volume {
				target = v.Target
				if !v.ReadOnly {
					t.Errorf("%s: mounts the %s volume read-write", svc.Name, volume)
				}
			}
		}
		if target == "" {
			continue
		}
		readers++
		if !composeDependsOn(p, svc.Name, initName) {
			t.Errorf("%s: reads the %s volume but does not start after %s", svc.Name, volume, initName)
		}
		user := svc.User
		if user == "" {
			if _, ok := binOf[svc.Name]; ok {
				user = "65532"
			} else {
				ref, _, _ := strings.Cut(svc.Image, ":")
				user = imageUsers[ref]
			}
		}
		uid, _, _ := strings.Cut(user, ":")
		for _, e := range composeEnvNames(svc.Environment) {
			v := svc.Environment[e]
			if v == nil || !strings.HasPrefix(*v, target+"/") {
				continue
			}
			file := strings.TrimPrefix(*v, target+"/")
			owner, ok := owners[file]
			if !ok {
				t.Errorf("%s: %s=%s, a file %s does not make", svc.Name, e, *v, initName)
				continue
			}
			if fmt.Sprint(owner) != uid {
				t.Errorf("%s: %s is owned by %d, but the service runs as %q", svc.Name, file, owner, user)
			}
		}
	}
	if readers < 4 {
		t.Errorf("%d services read the %s volume, want the control plane, data plane, seed job and Grafana", readers, volume)
	}
}

// secretsInitArgs splits "init-secrets --flag value ... SPEC..." as the
// subcommand parses it, checking the flags against its usage text.
func secretsInitArgs(t *testing.T, cmd []string) (map[string]string, []secretfile.Spec) {
	t.Helper()
	u := binaryUsage(t, "controlplane", "init-secrets")
	args := cmd[1:]
	i := 0
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		if u.flags[strings.TrimLeft(args[i], "-")] {
			i++
		}
		i++
	}
	for _, e := range binaryFlagErrors(args[:min(i, len(args))], u) {
		t.Errorf("init-secrets: %s", e)
	}
	flags := binaryFlagValues(args[:min(i, len(args))], u)
	var specs []secretfile.Spec
	for _, a := range args[min(i, len(args)):] {
		sp, err := secretfile.ParseSpec(a, flags["owner"])
		if err != nil {
			t.Errorf("init-secrets: %v", err)
			continue
		}
		specs = append(specs, sp)
	}
	if len(specs) == 0 {
		t.Fatalf("init-secrets %q names no secret", args)
	}
	return flags, specs
}

// composeDependsOn reports whether service from starts after dep, directly
// or through the services it waits for.
func composeDependsOn(p *types.Project, from, dep string) bool {
	seen := map[string]bool{}
	var walk func(string) bool
	walk = func(n string) bool {
		if seen[n] {
			return false
		}
		seen[n] = true
		for d := range p.Services[n].DependsOn {
			if d == dep || walk(d) {
				return true
			}
		}
		return false
	}
	return walk(from)
}

func deployValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func composeServiceRunning(t *testing.T, binOf map[string]string, bin string) string {
	t.Helper()
	var names []string
	for n, b := range binOf {
		if b == bin {
			names = append(names, n)
		}
	}
	if len(names) != 1 {
		t.Fatalf("services running %s: %v, want exactly one", bin, names)
	}
	return names[0]
}

func checkHAProxy(t *testing.T, cfg map[string][]string, dpService, trafficPort, opsPort string) {
	t.Helper()
	bound := false
	for header, lines := range cfg {
		if strings.HasPrefix(header, "frontend ") {
			for _, l := range lines {
				if l == "bind :8080" || l == "bind *:8080" || strings.HasPrefix(l, "bind :8080 ") || strings.HasPrefix(l, "bind *:8080 ") {
					bound = true
				}
			}
		}
	}
	if !bound {
		t.Error("haproxy.cfg: no frontend binds :8080")
	}
	var backend string
	var tmpl string
	for header, lines := range cfg {
		if !strings.HasPrefix(header, "backend ") {
			continue
		}
		for _, l := range lines {
			if strings.HasPrefix(l, "server-template ") && strings.Contains(l, " "+dpService+":"+trafficPort+" ") {
				backend, tmpl = header, l
			}
		}
	}
	if tmpl == "" {
		t.Fatalf("haproxy.cfg: no server-template for %s:%s", dpService, trafficPort)
	}
	lines := cfg[backend]
	if !strings.Contains(tmpl, " check port "+opsPort) {
		t.Errorf("haproxy.cfg %s: %q does not health-check the ops port %s", backend, tmpl, opsPort)
	}
	if l, ok := haproxyLine(lines, "http-check send "); !ok || !strings.Contains(l, " uri /readyz") {
		t.Errorf("haproxy.cfg %s: the health check does not GET /readyz", backend)
	}
	if l, ok := haproxyLine(lines, "retry-on "); !ok || !strings.Contains(l, "conn-failure") {
		t.Errorf("haproxy.cfg %s: no retry-on conn-failure", backend)
	}
	if _, ok := haproxyLine(lines, "option redispatch"); !ok {
		t.Errorf("haproxy.cfg %s: retries do not redispatch to another replica", backend)
	}
	f := strings.Fields(tmpl)
	i := slices.Index(f, "resolvers")
	if i < 0 || i+1 == len(f) {
		t.Fatalf("haproxy.cfg %s: the server-template names no resolvers", backend)
	}
	res, ok := cfg["resolvers "+f[i+1]]
	if !ok {
		t.Fatalf("haproxy.cfg: resolvers %s is not defined", f[i+1])
	}
	if l, ok := haproxyLine(res, "nameserver "); !ok || !strings.HasSuffix(l, " 127.0.0.11:53") {
		t.Errorf("haproxy.cfg resolvers %s: nameserver is not Docker's embedded DNS (127.0.0.11:53)", f[i+1])
	}
}

func checkPrometheus(t *testing.T, p *types.Project, opsPort string) {
	t.Helper()
	var file string
	for _, svc := range p.Services {
		if src, ok := composeBindSource(svc, "/etc/prometheus/prometheus.yml"); ok {
			file = src
		}
	}
	if file == "" {
		t.Fatal("no service mounts a prometheus.yml at /etc/prometheus/prometheus.yml")
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		ScrapeConfigs []struct {
			JobName         string `yaml:"job_name"`
			ConsulSDConfigs []struct {
				Server   string
				Services []string
			} `yaml:"consul_sd_configs"`
			RelabelConfigs []struct {
				TargetLabel string `yaml:"target_label"`
				Replacement string
			} `yaml:"relabel_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	found := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		for _, sd := range sc.ConsulSDConfigs {
			host, _, err := net.SplitHostPort(sd.Server)
			if _, known := p.Services[host]; err != nil || !known {
				t.Errorf("prometheus.yml %s: Consul server %q is not a compose service", sc.JobName, sd.Server)
			}
			for _, s := range sd.Services {
				found[s] = true
				if s != "portico-dataplane" {
					continue
				}
				// Data planes register their traffic port; metrics are on the ops port.
				ok := false
				for _, rc := range sc.RelabelConfigs {
					ok = ok || (rc.TargetLabel == "__address__" && strings.HasSuffix(rc.Replacement, ":"+opsPort))
				}
				if !ok {
					t.Errorf("prometheus.yml %s: no relabelling of __address__ to the ops port %s", sc.JobName, opsPort)
				}
			}
		}
	}
	for _, s := range []string{"portico-dataplane", "portico-controlplane"} {
		if !found[s] {
			t.Errorf("prometheus.yml: no consul_sd_configs job for %s", s)
		}
	}
}

func checkGrafana(t *testing.T, p *types.Project, root string) {
	t.Helper()
	dashboard := filepath.Join(root, "deployments", "grafana", "portico-dashboard.json")
	for _, svc := range composeServices(p) {
		prov, ok := composeBindSource(svc, "/etc/grafana/provisioning")
		if !ok {
			continue
		}
		var dashTarget string
		for _, v := range svc.Volumes {
			if v.Type == types.VolumeTypeBind && v.Source == dashboard {
				dashTarget = v.Target
			}
		}
		if dashTarget == "" {
			t.Fatalf("%s: deployments/grafana/portico-dashboard.json is not mounted", svc.Name)
		}
		var providers struct {
			Providers []struct {
				Type    string
				Options struct{ Path string }
			}
		}
		var datasources struct {
			Datasources []struct {
				Type      string
				URL       string
				IsDefault bool `yaml:"isDefault"`
			}
		}
		readYAMLDir(t, filepath.Join(prov, "dashboards"), &providers)
		readYAMLDir(t, filepath.Join(prov, "datasources"), &datasources)
		ok = false
		for _, pr := range providers.Providers {
			ok = ok || (pr.Type == "file" && path.Dir(dashTarget) == path.Clean(pr.Options.Path))
		}
		if !ok {
			t.Errorf("%s: no file dashboard provider reads %s, where the dashboard is mounted", svc.Name, path.Dir(dashTarget))
		}
		ok = false
		for _, ds := range datasources.Datasources {
			u, err := url.Parse(ds.URL)
			_, known := p.Services[u.Hostname()]
			ok = ok || (ds.Type == "prometheus" && ds.IsDefault && err == nil && known)
		}
		if !ok {
			t.Errorf("%s: no default prometheus data source pointing at a compose service", svc.Name)
		}
		return
	}
	t.Error("no service mounts Grafana provisioning at /etc/grafana/provisioning")
}

// readYAMLDir decodes every *.yml/*.yaml file of dir into v, appending lists.
func readYAMLDir(t *testing.T, dir string, v any) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.y*ml"))
	if len(files) == 0 {
		t.Errorf("%s: no provisioning files", dir)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(raw, v); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// k8sObject is the part of a Kubernetes manifest the checks below read.
type k8sObject struct {
	file       string
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Replicas *int `yaml:"replicas"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				Containers []k8sContainer `yaml:"containers"`
				Volumes    []struct {
					Name   string `yaml:"name"`
					Secret *struct {
						SecretName string `yaml:"secretName"`
					} `yaml:"secret"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
		ScaleTargetRef struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string `yaml:"kind"`
			Name       string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		Metrics []struct {
			Resource struct {
				Name string `yaml:"name"`
			} `yaml:"resource"`
		} `yaml:"metrics"`
	} `yaml:"spec"`
	// A Service's selector is a plain map, unlike a PodDisruptionBudget's.
	ServiceSelector map[string]string `yaml:"-"`
	// Secret example: the keys it documents.
	StringData map[string]string `yaml:"stringData"`
	// Kustomization.
	Resources []string `yaml:"resources"`
}

type k8sContainer struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string `yaml:"name"`
		ValueFrom struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	StartupProbe   *k8sProbe `yaml:"startupProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
	} `yaml:"resources"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string    `yaml:"path"`
		Port yaml.Node `yaml:"port"` // a number or a port name
	} `yaml:"httpGet"`
}

// portOf resolves a probe's port (number or container port name).
func (c k8sContainer) portOf(n yaml.Node) string {
	for _, p := range c.Ports {
		if p.Name == n.Value {
			return fmt.Sprint(p.ContainerPort)
		}
	}
	return n.Value
}

// binary returns the Portico binary an image runs: images are named by
// role (portico/<binary>), which kustomization.yaml maps to a registry.
func (c k8sContainer) binary() string {
	ref := c.Image
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		ref = ref[:i]
	}
	if dir, base := path.Split(ref); strings.HasSuffix(dir, "portico/") && slices.Contains(porticoBinaries, base) {
		return base
	}
	return ""
}

func loadKubernetes(t *testing.T, dir string) []k8sObject {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.y*ml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s (%v)", dir, err)
	}
	var objs []k8sObject
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(fh)
		for n := 0; ; n++ {
			var doc yaml.Node
			if err := dec.Decode(&doc); err == io.EOF {
				break
			} else if err != nil {
				t.Errorf("%s document %d: %v", filepath.Base(f), n, err)
				break
			}
			var o k8sObject
			if err := doc.Decode(&o); err != nil {
				t.Errorf("%s document %d: %v", filepath.Base(f), n, err)
				continue
			}
			o.file = filepath.Base(f)
			if o.APIVersion == "" || o.Kind == "" {
				t.Errorf("%s document %d: no apiVersion or kind", o.file, n)
				continue
			}
			if o.Kind == "Service" {
				var s struct {
					Spec struct {
						Selector map[string]string `yaml:"selector"`
					} `yaml:"spec"`
				}
				if err := doc.Decode(&s); err != nil {
					t.Errorf("%s Service %s: %v", o.file, o.Metadata.Name, err)
				}
				o.ServiceSelector = s.Spec.Selector
			}
			objs = append(objs, o)
		}
		fh.Close()
	}
	return objs
}

func k8sSelects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestKubernetesManifests checks deployments/kubernetes without a cluster.
func TestKubernetesManifests(t *testing.T) {
	dir := filepath.Join(deployRepoRoot(t), "deployments", "kubernetes")
	objs := loadKubernetes(t, dir)

	var workloads, hpas, selecting []k8sObject
	secretKeys := map[string]map[string]bool{}
	for _, o := range objs {
		switch o.Kind {
		case "Deployment", "StatefulSet":
			workloads = append(workloads, o)
		case "HorizontalPodAutoscaler":
			hpas = append(hpas, o)
		case "Service", "PodDisruptionBudget":
			selecting = append(selecting, o)
		case "Secret":
			keys := map[string]bool{}
			for k := range o.StringData {
				keys[k] = true
			}
			secretKeys[o.Metadata.Name] = keys
		case "Kustomization":
			for _, r := range o.Resources {
				if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
					t.Errorf("%s: resource %v", o.file, err)
				}
				if r == "secret.example.yaml" {
					t.Errorf("%s applies secret.example.yaml, whose values are placeholders", o.file)
				}
			}
		}
	}

	dpDeployments := map[string]k8sObject{}
	seen := map[string]bool{}
	for _, w := range workloads {
		where := w.file + " " + w.Kind + "/" + w.Metadata.Name
		if !k8sSelects(w.Spec.Selector.MatchLabels, w.Spec.Template.Metadata.Labels) {
			t.Errorf("%s: selector %v does not match its pod labels %v", where, w.Spec.Selector.MatchLabels, w.Spec.Template.Metadata.Labels)
		}
		for _, c := range w.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				if ref := e.ValueFrom.SecretKeyRef; ref != nil && !secretKeys[ref.Name][ref.Key] {
					t.Errorf("%s: %s reads key %q of Secret %q, which secret.example.yaml does not show", where, e.Name, ref.Key, ref.Name)
				}
			}
			bin := c.binary()
			if bin == "" {
				continue
			}
			seen[bin] = true
			where := where + " container " + c.Name
			if len(c.Command) > 0 {
				t.Errorf("%s: overrides the image's entrypoint (the binary)", where)
			}
			u := binaryUsage(t, bin)
			for _, e := range binaryFlagErrors(c.Args, u) {
				t.Errorf("%s args: %s", where, e)
			}
			var names []string
			for _, e := range c.Env {
				names = append(names, e.Name)
				if strings.Contains(e.Name, "TOKEN") {
					t.Errorf("%s: %s in the environment; tokens go in files of a Secret volume (--*-token-file)", where, e.Name)
				}
			}
			for _, e := range binaryEnvErrors(names, u) {
				t.Errorf("%s: %s", where, e)
			}
			// Token files are keys of a Secret mounted read-only.
			vals := binaryFlagValues(c.Args, u)
			need := map[string][]string{"controlplane": {"admin-token-file", "dataplane-token-file"}, "dataplane": {"token-file"}}
			for _, f := range need[bin] {
				if vals[f] == "" {
					t.Errorf("%s: no --%s", where, f)
				}
			}
			for flag, file := range vals {
				if !strings.HasSuffix(flag, "token-file") {
					continue
				}
				ok := false
				for _, m := range c.VolumeMounts {
					for _, v := range w.Spec.Template.Spec.Volumes {
						if v.Name == m.Name && v.Secret != nil && m.ReadOnly && path.Dir(file) == path.Clean(m.MountPath) {
							ok = secretKeys[v.Secret.SecretName][path.Base(file)]
						}
					}
				}
				if !ok {
					t.Errorf("%s: --%s %s is not a key of a Secret that secret.example.yaml shows, mounted read-only", where, flag, file)
				}
			}
			ports := deployValues(binaryListenPorts(t, c.Args, u))
			for kind, pr := range map[string]*k8sProbe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
				if pr == nil {
					if kind != "startup" {
						t.Errorf("%s: no %s probe", where, kind)
					}
					continue
				}
				if pr.HTTPGet == nil {
					t.Errorf("%s: %s probe is not an HTTP GET", where, kind)
					continue
				}
				if port := c.portOf(pr.HTTPGet.Port); !slices.Contains(ports, port) {
					t.Errorf("%s: %s probe on port %s, which the args do not listen on (%v)", where, kind, port, ports)
				}
				if kind == "readiness" && pr.HTTPGet.Path != "/readyz" {
					t.Errorf("%s: readiness probe on %s, want /readyz", where, pr.HTTPGet.Path)
				}
				if kind == "liveness" && pr.HTTPGet.Path != "/healthz" {
					// /readyz fails while draining or cut off from the control plane;
					// restarting for either would only make things worse.
					t.Errorf("%s: liveness probe on %s, want /healthz", where, pr.HTTPGet.Path)
				}
			}
			if bin == "dataplane" {
				ops := binaryFlagValues(c.Args, u)["ops-listen"]
				if rp := c.ReadinessProbe; rp != nil && rp.HTTPGet != nil {
					if p := c.portOf(rp.HTTPGet.Port); !strings.HasSuffix(ops, ":"+p) {
						t.Errorf("%s: readiness probe on port %s, not the ops port (--ops-listen %s)", where, p, ops)
					}
				}
				if c.Resources.Requests["cpu"] == "" {
					t.Errorf("%s: no CPU request, which CPU-utilization autoscaling is relative to", where)
				}
				if w.Kind == "Deployment" {
					dpDeployments[w.Metadata.Name] = w
				}
			}
		}
	}
	for _, bin := range []string{"controlplane", "dataplane"} {
		if !seen[bin] {
			t.Errorf("no workload runs %s", bin)
		}
	}

	if len(hpas) == 0 {
		t.Error("no HorizontalPodAutoscaler")
	}
	for _, h := range hpas {
		ref := h.Spec.ScaleTargetRef
		dp, ok := dpDeployments[ref.Name]
		if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || !ok {
			t.Errorf("%s HPA %s targets %s %s/%s, not the data-plane Deployment (%v)", h.file, h.Metadata.Name, ref.APIVersion, ref.Kind, ref.Name, deployKeys(dpDeployments))
			continue
		}
		if dp.Spec.Replicas != nil {
			t.Errorf("%s: Deployment %s sets replicas, which every apply would reset under the HPA", dp.file, dp.Metadata.Name)
		}
		cpu := false
		for _, m := range h.Spec.Metrics {
			cpu = cpu || m.Resource.Name == "cpu"
		}
		if !cpu {
			t.Errorf("%s HPA %s: no CPU metric", h.file, h.Metadata.Name)
		}
	}

	for _, s := range selecting {
		sel := s.ServiceSelector
		if s.Kind == "PodDisruptionBudget" {
			sel = s.Spec.Selector.MatchLabels
		}
		matched := false
		for _, w := range workloads {
			matched = matched || k8sSelects(sel, w.Spec.Template.Metadata.Labels)
		}
		if !matched {
			t.Errorf("%s %s %s: selector %v matches no pod template", s.file, s.Kind, s.Metadata.Name, sel)
		}
	}
}

func deployKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
