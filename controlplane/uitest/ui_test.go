package uitest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/childproc"
	"github.com/portico-gw/portico/shared/client"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

const (
	adminToken = "ui-admin-token-0123456789"
	dpToken    = "ui-dataplane-token-0123456789"
)

// binDir holds the binaries built once for the package.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(testutil.RunWithBinaries(m, "portico-uitest-bin-", func(dir string) { binDir = dir },
		"github.com/portico-gw/portico/controlplane/cmd/controlplane",
		"github.com/portico-gw/portico/dataplane/cmd/dataplane",
		"github.com/portico-gw/portico/dataplane/cmd/demo-upstream",
	))
}

// start runs one of the built binaries until the test ends; its output
// is shown when the test fails.
func start(t *testing.T, name string, args ...string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, strings.Fields(name)[0]), args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := childproc.Start(cmd); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		f.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- %s log:\n%s", name, tail(string(b), 30))
		}
	})
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var httpc = &http.Client{Timeout: 5 * time.Second}

func get(url string) (int, string) {
	resp, err := httpc.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func addr(t *testing.T) string { return fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)) }

// controlPlane starts a control plane (dev: without tokens) and returns
// its URL.
func controlPlane(t *testing.T, dev bool) string {
	t.Helper()
	a := addr(t)
	args := []string{"--listen", a, "--store", "bolt:" + filepath.Join(t.TempDir(), "cp.db"), "--log-level", "warn"}
	if dev {
		args = append(args, "--dev")
	} else {
		args = append(args, "--admin-token", adminToken, "--dataplane-token", dpToken)
	}
	start(t, "controlplane", args...)
	url := "http://" + a
	testutil.Eventually(t, 20*time.Second, func() bool { c, _ := get(url + "/readyz"); return c == 200 }, "control plane ready")
	return url
}

// browser starts headless Chromium with a new empty profile and the flags
// that keep it off the network (this machine has none; without them
// Chromium stalls on its background services). It collects uncaught
// exceptions, console errors and CSP violations, which fail the test.
type browser struct {
	ctx      context.Context
	mu       sync.Mutex
	problems []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	bin := os.Getenv("CHROMIUM_BIN")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("chromium"); err != nil {
			t.Fatal("no Chromium: set CHROMIUM_BIN or run scripts/ensure-chromium.sh (make test does)")
		}
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.WindowSize(1280, 820),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	b := &browser{ctx: ctx}
	// The first run starts Chromium and must not carry a timeout (it would
	// stop the browser with it); the test's own timeout bounds it.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium (%s): %v", bin, err)
	}
	messages := chromedp.Console(ctx)
	go func() { // ends with ctx, at the test's cleanup
		for m, err := range messages {
			if err != nil {
				return
			}
			// Refused requests (401, 412, 422) are logged by the browser's
			// network source; they are expected here.
			if m.IsException() || strings.Contains(m.Text, "Content Security Policy") ||
				(m.Type == chromedp.ConsoleError && m.Source != "network") {
				b.mu.Lock()
				b.problems = append(b.problems, m.String())
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// do runs actions within d, failing the test with what was being done,
// the page and the browser's complaints.
func (b *browser) do(t *testing.T, d time.Duration, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	_, err := bounded(b, d, chromedp.Steps(actions...))
	if err != nil {
		b.fail(t, what, err)
	}
}

// bounded runs an action within d. A protocol call that a busy page never
// answers has once outlived its context here (a wait after an earlier
// failure hung past its deadline), so the wait for the result is bounded
// too: past d and a grace the step fails instead of hanging the package.
func bounded[T any](b *browser, d time.Duration, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() { // returns when the browser answers or the test's browser is closed
		v, err := chromedp.Run(ctx, a)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-time.After(d + 10*time.Second):
		var zero T
		return zero, fmt.Errorf("no answer from the browser within %v", d+10*time.Second)
	}
}

func (b *browser) fail(t *testing.T, what string, err error) {
	t.Helper()
	html, _ := bounded(b, 5*time.Second, chromedp.OuterHTML(chromedp.CSS("main")))
	b.mu.Lock()
	problems := b.problems
	b.mu.Unlock()
	t.Fatalf("%s: %v\npage: %s\nbrowser problems: %v", what, err, tail(html, 60), problems)
}

// wait waits until the JavaScript expression is truthy.
func (b *browser) wait(t *testing.T, what, expr string) {
	t.Helper()
	b.do(t, 35*time.Second, "wait for "+what, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second)))
}

func eval[T any](t *testing.T, b *browser, expr string) T {
	t.Helper()
	v, err := bounded(b, 10*time.Second, chromedp.Evaluate[T](expr))
	if err != nil {
		b.fail(t, "evaluate "+expr, err)
	}
	return v
}

func (b *browser) click(t *testing.T, sel string) {
	t.Helper()
	b.do(t, 10*time.Second, "click "+sel, chromedp.Click(chromedp.CSS(sel)))
}

// goTo navigates within the UI (the hash router).
func (b *browser) goTo(t *testing.T, hash string) {
	t.Helper()
	eval[chromedp.Void](t, b, "location.hash = "+jsString(hash)+", true")
}

// setEditor replaces the editor's text as typing would (an input event).
func (b *browser) setEditor(t *testing.T, text string) {
	t.Helper()
	b.wait(t, "the editor", `!!document.querySelector('#editor')`)
	eval[chromedp.Void](t, b, `(() => { const e = document.querySelector('#editor'); e.value = `+jsString(text)+`; e.dispatchEvent(new Event('input')); return true; })()`)
}

// screenshot saves a PNG of the page when PORTICO_UI_SCREENSHOTS names a
// directory (make ui-screenshots), and takes it anyway otherwise: the
// capture itself is part of what is tested.
func (b *browser) screenshot(t *testing.T, name string) {
	t.Helper()
	png, err := bounded(b, 20*time.Second, chromedp.CaptureScreenshot())
	if err != nil {
		b.fail(t, "screenshot "+name, err)
	}
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Fatalf("screenshot %s is not a PNG", name)
	}
	if dir := os.Getenv("PORTICO_UI_SCREENSHOTS"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (b *browser) noProblems(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.problems) > 0 {
		t.Fatalf("the browser reported problems:\n%s", strings.Join(b.problems, "\n"))
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestAdminUI is the operator's path through the UI against a real control
// plane, data plane and service: a bad token refused, sign-in, a service
// and a route created in the editor and served by the data plane, a
// validation error shown beside its line, a stale edit refused with the
// conflict message, the live views, delete, sign-out.
func TestAdminUI(t *testing.T) {
	cp := controlPlane(t, false)
	upAddr := addr(t)
	start(t, "demo-upstream", "--listen", upAddr, "--name", "hello-svc")
	dpAddr, dpOps := addr(t), addr(t)
	start(t, "dataplane", "--controlplane", cp, "--token", dpToken, "--listen", dpAddr, "--ops-listen", dpOps,
		"--state-dir", t.TempDir(), "--node-id", "dp-1", "--poll-wait", "10s", "--report-interval", "1s", "--log-level", "warn")
	dp := "http://" + dpAddr
	testutil.Eventually(t, 20*time.Second, func() bool { c, _ := get("http://" + dpOps + "/healthz"); return c == 200 }, "data plane up")
	admin, err := client.New(cp, adminToken, client.WithActor("uitest"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	b := newBrowser(t)
	// The steps build on each other: stop at the first that fails.
	step := func(name string, f func(t *testing.T)) {
		if !t.Failed() {
			t.Run(name, f)
		}
	}

	step("security headers", func(t *testing.T) {
		resp, err := httpc.Get(cp + "/ui/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("CSP %q lacks %q", csp, want)
			}
		}
		if resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("X-Content-Type-Options") != "nosniff" ||
			resp.Header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("security headers: %v", resp.Header)
		}
	})

	step("bad token refused", func(t *testing.T) {
		b.do(t, 30*time.Second, "open the UI", chromedp.Navigate(cp+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#signin")))
		b.do(t, 10*time.Second, "type a wrong token",
			chromedp.SendKeys(chromedp.CSS("#token"), "not-the-admin-token"), chromedp.Click(chromedp.CSS("#signin-button")))
		b.wait(t, "the refusal", `document.querySelector('#signin-error').textContent.includes('refused')`)
		if stored := eval[*string](t, b, `sessionStorage.getItem('portico.token')`); stored != nil {
			t.Fatalf("a refused token was stored: %v", stored)
		}
		b.wait(t, "still signed out", `!document.querySelector('#nav-routes')`)
		b.screenshot(t, "ui-signin")
	})

	step("sign in", func(t *testing.T) {
		eval[chromedp.Void](t, b, `document.querySelector('#token').value = '', true`)
		b.do(t, 10*time.Second, "type the admin token",
			chromedp.SendKeys(chromedp.CSS("#token"), adminToken), chromedp.Click(chromedp.CSS("#signin-button")))
		b.wait(t, "the routes list", `!!document.querySelector('#list-routes') && document.querySelector('.status').textContent.includes('revision')`)
		if href := eval[string](t, b, `location.href`); strings.Contains(href, adminToken) {
			t.Fatalf("the token is in the URL: %s", href)
		}
		if stored := eval[string](t, b, `sessionStorage.getItem('portico.token')`); stored != adminToken {
			t.Fatalf("sessionStorage token = %q", stored)
		}
	})

	step("create a route and watch the data plane serve it", func(t *testing.T) {
		b.goTo(t, "#/services/new")
		b.setEditor(t, fmt.Sprintf(`{"name": "web", "targets": [{"url": "http://%s"}]}`, upAddr))
		b.click(t, "#save")
		b.wait(t, "the created service", `location.hash === '#/services/edit/web' && document.querySelector('.meta').textContent.includes('version 1')`)

		b.goTo(t, "#/routes/new")
		b.setEditor(t, `{"name": "hello", "paths": ["/hello"], "service": "web", "strip_prefix": true}`)
		b.click(t, "#save")
		b.wait(t, "the created route", `location.hash === '#/routes/edit/hello' && document.querySelector('.meta').textContent.includes('version 1')`)

		testutil.Eventually(t, 20*time.Second, func() bool {
			code, body := get(dp + "/hello")
			return code == 200 && strings.Contains(body, `"service":"hello-svc"`)
		}, "the data plane serving /hello from the service")

		b.goTo(t, "#/dataplanes")
		b.wait(t, "convergence", `document.querySelector('#converged')?.textContent === 'converged' && !!document.querySelector('#dataplanes tr[data-node="dp-1"][data-converged="true"]')`)
		b.screenshot(t, "ui-dataplanes")

		b.goTo(t, "#/routes/view/hello")
		b.wait(t, "the route view", `document.querySelector('#route-nodes tr[data-node="dp-1"]')?.textContent.includes('serves version 1') && document.querySelector('#stages').textContent.includes('forward to web')`)
		b.screenshot(t, "ui-route-view")

		b.goTo(t, "#/routes")
		b.wait(t, "the route in the list", `!!document.querySelector('#list-routes tr[data-name="hello"]')`)
		b.screenshot(t, "ui-routes")
	})

	step("validation error beside its line", func(t *testing.T) {
		b.goTo(t, "#/routes/edit/hello")
		b.wait(t, "the editor with the route", `document.querySelector('#editor')?.value.includes('/hello')`)
		// paths[0] is on line 4 and methods[0] on line 7.
		b.setEditor(t, "{\n  \"name\": \"hello\",\n  \"paths\": [\n    \"hello\"\n  ],\n  \"methods\": [\n    \"GTE\"\n  ],\n  \"service\": \"web\"\n}")
		b.click(t, "#save")
		b.wait(t, "the errors beside lines 4 and 7",
			`!!document.querySelector('.note.error[data-line="4"] .field-error[data-field="paths[0]"]') && `+
				`!!document.querySelector('.note.error[data-line="7"] .field-error[data-field="methods[0]"]') && `+
				`!!document.querySelector('.ln.error[data-line="4"]') && !document.querySelector('.ln.error[data-line="2"]')`)
		if msg := eval[string](t, b, `document.querySelector('.note.error[data-line="7"]').textContent`); !strings.Contains(msg, "GTE") {
			t.Errorf("methods[0] note = %q, want the server's message naming GTE", msg)
		}
		b.screenshot(t, "ui-edit-errors")
		r, err := admin.Routes().Get(ctx, "hello")
		if err != nil || r.Version != 1 || r.Paths[0] != "/hello" {
			t.Fatalf("a refused edit changed the route: %+v %v", r, err)
		}
		// Broken JSON is caught in the browser, on its line.
		b.setEditor(t, "{\n  \"name\": \"hello\",\n  \"paths\": [\"/hello\"]\n  \"service\": \"web\"\n}")
		b.click(t, "#save")
		b.wait(t, "the syntax error on line 4", `!!document.querySelector('.ln.error[data-line="4"]') && document.querySelector('.problem').textContent.includes('Not valid JSON')`)
	})

	step("conflict on a stale edit", func(t *testing.T) {
		b.goTo(t, "#/routes")
		b.goTo(t, "#/routes/edit/hello")
		b.wait(t, "the editor at version 1", `document.querySelector('.meta')?.textContent.includes('version 1') && document.querySelector('#editor').value.includes('/hello')`)
		// Someone else changes the route meanwhile.
		r, err := admin.Routes().Get(ctx, "hello")
		if err != nil {
			t.Fatal(err)
		}
		r.Methods = []string{"GET"}
		if _, _, err := admin.Routes().Put(ctx, "hello", *r, client.IfMatch(1)); err != nil {
			t.Fatal(err)
		}
		b.setEditor(t, `{"name": "hello", "paths": ["/hello", "/hi"], "service": "web", "strip_prefix": true}`)
		b.click(t, "#save")
		b.wait(t, "the conflict message", `document.querySelector('#conflict')?.textContent.includes('Someone else changed this object') && document.querySelector('#conflict').textContent.includes('now version 2')`)
		b.screenshot(t, "ui-conflict")
		if r, err := admin.Routes().Get(ctx, "hello"); err != nil || r.Version != 2 || len(r.Paths) != 1 {
			t.Fatalf("the stale edit was applied: %+v %v", r, err)
		}
		b.click(t, "#reload")
		b.wait(t, "their version", `document.querySelector('.meta').textContent.includes('version 2') && document.querySelector('#editor').value.includes('"GET"') && !document.querySelector('#conflict')`)
		b.setEditor(t, `{"name": "hello", "paths": ["/hello", "/hi"], "methods": ["GET"], "service": "web", "strip_prefix": true}`)
		b.click(t, "#save")
		b.wait(t, "saved", `document.querySelector('.saved').textContent.includes('version 3')`)
		testutil.Eventually(t, 20*time.Second, func() bool { c, _ := get(dp + "/hi"); return c == 200 }, "the data plane serving /hi")
	})

	step("traffic", func(t *testing.T) {
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { // steady traffic while the charts fill
			defer close(done)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(time.Duration(10+i/100%4*10) * time.Millisecond): // a rate that changes
				}
				path := "/hello"
				if i%10 == 0 {
					path = "/hello/missing-on-purpose" // the demo service's own answers
				}
				get(dp + path)
			}
		}()
		defer func() { close(stop); <-done }()
		b.goTo(t, "#/traffic")
		b.wait(t, "the hello route's traffic", `!!document.querySelector('#traffic tr[data-route="hello"]')`)
		b.click(t, `#traffic tr[data-route="hello"] a`)
		// The charts come from the server's series (?step=10s): their
		// highest point is the traffic just sent.
		b.wait(t, "charts of hello's traffic", `parseFloat(document.querySelector('#chart-rps polyline')?.dataset.max) > 1 && `+
			`parseFloat(document.querySelector('#chart-latency polyline[data-series="p99"]')?.dataset.max) > 0 && `+
			`document.querySelector('#chart-rps .chart-title').textContent.includes('hello')`)
		if rps := eval[float64](t, b, `parseFloat(document.querySelector('#traffic tr[data-route="hello"] td:nth-child(3)').textContent)`); rps <= 0 {
			t.Fatalf("req/s of hello = %v", rps)
		}
		if os.Getenv("PORTICO_UI_SCREENSHOTS") != "" {
			// For the docs: let the charts show a minute of traffic.
			time.Sleep(60 * time.Second)
		}
		b.screenshot(t, "ui-traffic")
	})

	step("audit log", func(t *testing.T) {
		b.goTo(t, "#/audit")
		b.wait(t, "the UI's changes", `[...document.querySelectorAll('#audit tbody tr')].some((tr) => tr.textContent.includes('route hello') && tr.textContent.includes('ui'))`)
		b.screenshot(t, "ui-audit")
	})

	step("delete", func(t *testing.T) {
		if _, _, err := admin.Routes().Create(ctx, config.Route{Name: "tmp", Paths: []string{"/tmp"}, Service: "web"}); err != nil {
			t.Fatal(err)
		}
		b.goTo(t, "#/services")
		b.goTo(t, "#/routes")
		b.wait(t, "the tmp route", `!!document.querySelector('#list-routes tr[data-name="tmp"]')`)
		b.do(t, 10*time.Second, "delete tmp",
			chromedp.Click(chromedp.CSS(`#list-routes tr[data-name="tmp"] button.danger`)),
			chromedp.Click(chromedp.CSS(`#list-routes tr[data-name="tmp"] .confirm button.danger`)))
		b.wait(t, "tmp gone", `!!document.querySelector('#list-routes') && !document.querySelector('#list-routes tr[data-name="tmp"]') && !!document.querySelector('#list-routes tr[data-name="hello"]')`)
		if _, err := admin.Routes().Get(ctx, "tmp"); client.StatusOf(err) != 404 {
			t.Fatalf("tmp after delete: %v", err)
		}
		// A service in use cannot be deleted: the server's 409 is shown.
		b.goTo(t, "#/services")
		b.wait(t, "the services", `!!document.querySelector('#list-services tr[data-name="web"]')`)
		b.do(t, 10*time.Second, "delete web",
			chromedp.Click(chromedp.CSS(`#list-services tr[data-name="web"] button.danger`)),
			chromedp.Click(chromedp.CSS(`#list-services tr[data-name="web"] .confirm button.danger`)))
		b.wait(t, "the 409", `document.querySelector('#list-services tr[data-name="web"] .problem')?.dataset.status === '409'`)
	})

	step("global defaults", func(t *testing.T) {
		b.goTo(t, "#/global")
		b.wait(t, "the global editor", `!!document.querySelector('#editor') && document.querySelector('.meta').textContent.includes('revision')`)
		// rate_limit.limit is on line 3; the server names it global.rate_limit.limit.
		b.setEditor(t, "{\n  \"rate_limit\": {\n    \"limit\": -1,\n    \"window\": \"1s\"\n  }\n}")
		b.click(t, "#save")
		b.wait(t, "the error on line 3", `!!document.querySelector('.note.error[data-line="3"] .field-error[data-field="global.rate_limit.limit"]') && !document.querySelector('.ln.error[data-line="1"]')`)
		b.setEditor(t, `{"rate_limit": {"limit": 1000, "window": "1s"}}`)
		b.click(t, "#save")
		b.wait(t, "saved", `document.querySelector('.saved').textContent.includes('Saved')`)
		// Any change elsewhere moves the revision the page holds.
		if _, _, err := admin.Routes().Put(ctx, "hello2", config.Route{Paths: []string{"/hello2"}, Service: "web"}); err != nil {
			t.Fatal(err)
		}
		b.setEditor(t, `{"rate_limit": {"limit": 2000, "window": "1s"}}`)
		b.click(t, "#save")
		b.wait(t, "the conflict message", `document.querySelector('#conflict')?.textContent.includes('The configuration changed')`)
		b.click(t, "#reload")
		b.wait(t, "the current defaults", `!document.querySelector('#conflict') && document.querySelector('#editor').value.includes('1000')`)
	})

	step("consumer API keys", func(t *testing.T) {
		if _, _, err := admin.Consumers().Create(ctx, config.Consumer{Name: "alice"}); err != nil {
			t.Fatal(err)
		}
		b.goTo(t, "#/consumers/edit/alice")
		b.wait(t, "the consumer and its keys", `document.querySelector('.meta')?.textContent.includes('version 1') && document.querySelector('#api-keys')?.textContent.includes('No API keys')`)
		b.click(t, "#api-key-create")
		b.wait(t, "the key, once, and the editor reloaded", `(document.querySelector('#api-key-secret')?.value || '').length > 20 && !!document.querySelector('#api-keys tr[data-id]') && document.querySelector('.meta').textContent.includes('version 2')`)
		key := eval[string](t, b, `document.querySelector('#api-key-secret').value`)
		c, err := admin.Consumers().Get(ctx, "alice")
		if err != nil || len(c.APIKeys) != 1 || !strings.HasPrefix(key, c.APIKeys[0].Prefix) || strings.Contains(c.APIKeys[0].Hash, key) {
			t.Fatalf("alice after the UI made a key: %+v %v", c, err)
		}
		b.click(t, `#api-keys tr[data-id] button.danger`)
		b.wait(t, "the key revoked", `document.querySelector('#api-keys').textContent.includes('No API keys') && document.querySelector('.meta').textContent.includes('version 3')`)
		if c, err := admin.Consumers().Get(ctx, "alice"); err != nil || len(c.APIKeys) != 0 {
			t.Fatalf("alice after revoking: %+v %v", c, err)
		}
	})

	step("tokens", func(t *testing.T) {
		b.goTo(t, "#/tokens")
		b.wait(t, "the tokens page", `!!document.querySelector('#token-form') && !!document.querySelector('#tokens tbody tr')`)
		eval[chromedp.Void](t, b, `document.querySelector('#token-role').value = 'write', true`)
		b.do(t, 10*time.Second, "create a token",
			chromedp.SendKeys(chromedp.CSS("#token-name"), "ci-bot"),
			chromedp.Click(chromedp.CSS(`.token-kind[value="route"]`)),
			chromedp.Click(chromedp.CSS("#token-create")))
		b.wait(t, "the secret, once", `(document.querySelector('#token-secret')?.value || '').startsWith('pat_') && !!document.querySelector('#tokens tr[data-name="ci-bot"]')`)
		secret := eval[string](t, b, `document.querySelector('#token-secret').value`)
		bot, err := client.New(cp, secret)
		if err != nil {
			t.Fatal(err)
		}
		who, err := bot.Whoami(ctx)
		if err != nil || who.Token != "ci-bot" || who.Role != "write" || len(who.Kinds) != 1 || who.Kinds[0] != config.KindRoute {
			t.Fatalf("whoami with the token the UI made: %+v %v", who, err)
		}
		b.click(t, `#tokens tr[data-name="ci-bot"] button.danger`)
		b.click(t, `#tokens tr[data-name="ci-bot"] .confirm button.danger`)
		b.wait(t, "ci-bot revoked", `!document.querySelector('#tokens tr[data-name="ci-bot"]') && !!document.querySelector('#tokens tbody tr')`)
		if _, err := bot.Whoami(ctx); client.StatusOf(err) != 401 {
			t.Fatalf("a revoked token: %v, want 401", err)
		}
	})

	step("sign out", func(t *testing.T) {
		b.click(t, "#sign-out")
		b.wait(t, "the sign-in form", `!!document.querySelector('#signin') && sessionStorage.getItem('portico.token') === null`)
	})

	step("a read-only scoped token", func(t *testing.T) {
		tok, err := admin.CreateToken(ctx, apiv1.TokenSpec{Name: "viewer", Role: "read"})
		if err != nil {
			t.Fatal(err)
		}
		b.do(t, 10*time.Second, "sign in with the read token",
			chromedp.SendKeys(chromedp.CSS("#token"), tok.Secret), chromedp.Click(chromedp.CSS("#signin-button")))
		b.wait(t, "the token named in the header", `document.querySelector('#whoami')?.textContent.includes('token:viewer') && document.querySelector('#whoami').textContent.includes('read')`)
		b.goTo(t, "#/routes")
		b.wait(t, "a read-only list", `!!document.querySelector('#list-routes tr[data-name="hello"]') && !!document.querySelector('#read-only') && !document.querySelector('#new-object') && !document.querySelector('#list-routes button.danger')`)
		b.goTo(t, "#/routes/edit/hello")
		b.wait(t, "a read-only editor", `document.querySelector('#editor')?.value.includes('/hi') && document.querySelector('#save').disabled && document.querySelector('#editor').readOnly`)
		b.click(t, "#sign-out")
		b.wait(t, "the sign-in form", `!!document.querySelector('#signin')`)
	})

	b.noProblems(t)
}

// TestAdminUIDevMode: a control plane started with --dev needs no token, and
// the UI says so.
func TestAdminUIDevMode(t *testing.T) {
	cp := controlPlane(t, true)
	b := newBrowser(t)
	b.do(t, 30*time.Second, "open the UI", chromedp.Navigate(cp+"/ui/"))
	b.wait(t, "the routes list in dev mode", `!!document.querySelector('#dev-mode') && !!document.querySelector('#list-routes')`)
	b.noProblems(t)
}
