# Portico: `make run` starts a working gateway on this machine; `make test`
# runs every test (providing the Consul agent the tests need).

SHELL       := /bin/bash
GO          ?= go
BIN         := $(CURDIR)/bin
VERSION     ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X main.version=$(VERSION)
PKGS        := ./shared/... ./controlplane/... ./dataplane/...
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOBIN_DIR   := $(shell $(GO) env GOPATH)/bin

.PHONY: chaos fuzz-short all build run test test-only lint fmt bench bench-go bench-propagation bench-scale bench-load fuzz soak consul redis jaeger haproxy soap compose helm chromium ui-screenshots pebble hydra cluster cluster-down clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/controlplane ./controlplane/cmd/controlplane
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/porticoctl ./controlplane/cmd/porticoctl
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/dataplane ./dataplane/cmd/dataplane
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/demo-upstream ./dataplane/cmd/demo-upstream
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/demo-grpc ./dataplane/cmd/demo-grpc
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/demo-soap ./dataplane/cmd/demo-soap
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/demo-oidc ./dataplane/cmd/demo-oidc

## run: control plane (dev mode, embedded store) + one data plane + a demo upstream.
run: build
	@scripts/run.sh

## consul: build (once) or reuse the Consul agent the tests run against.
consul:
	@scripts/ensure-consul.sh >/dev/null

## jaeger: build (once) or reuse the Jaeger all-in-one the trace export test sends to.
jaeger:
	@scripts/ensure-jaeger.sh >/dev/null

## compose: build (once) or reuse the Docker Compose CLI that checks docker-compose.yml (`docker-compose config`).
compose:
	@scripts/ensure-compose.sh >/dev/null

## helm: build (once) or reuse the Helm CLI that renders and lints the chart (deployments/helm/test).
helm:
	@scripts/ensure-helm.sh >/dev/null

.PHONY: opa
## opa: build (once) or reuse Open Policy Agent (v1.22.4) and opa-extauthz (its Rego engine behind Envoy's ext_authz gRPC API), the decision services of the external-authorization tests.
opa:
	@scripts/ensure-opa.sh >/dev/null
	@scripts/ensure-opa-extauthz.sh >/dev/null

## pebble: build (once) or reuse Pebble, the ACME server the certificate tests order from (with its DNS helper).
pebble:
	@scripts/ensure-pebble.sh >/dev/null

## hydra: build (once) or reuse the ORY Hydra the OAuth2 introspection and OIDC login tests run against.
hydra:
	@scripts/ensure-hydra.sh >/dev/null

## redis: install redis-server (Debian package) when missing.
redis:
	@scripts/ensure-redis.sh

## soap: install python3-spyne and python3-zeep (Debian packages) when missing; the SOAP tests run a spyne service.
soap:
	@scripts/ensure-soap.sh

## haproxy: install haproxy (Debian package) when missing; the twin tests and make cluster run it.
haproxy:
	@scripts/ensure-haproxy.sh

## chromium: install Chromium (Debian package) when missing; the admin UI's browser tests drive it.
chromium:
	@scripts/ensure-chromium.sh >/dev/null

## ui-screenshots: run the browser tests and save the main UI pages as PNGs in docs/img/.
ui-screenshots: chromium
	CHROMIUM_BIN="$$(scripts/ensure-chromium.sh)" PORTICO_UI_SCREENSHOTS=$(CURDIR)/docs/img $(GO) test -count=1 -timeout 5m -run '^TestAdminUI$$' ./controlplane/uitest/

## test: lint, then every test with the race detector against real servers.
test: lint test-only fuzz-short

# ALONE: tests that check that rate-limit decisions stay in Redis under load
# (the busy-process test, the cluster saturation test, the twin stack), run
# after the others, one package at a time, with the machine to themselves:
# beside other test packages on two cores a starved redis-server is a slow
# Redis, which is what they must not confuse with a busy data plane.
ALONE := TestBusyProcessDecidesInRedis|TestRateLimitCluster|TestTwin
TEST_ENV = CONSUL_BIN="$$(scripts/ensure-consul.sh)" JAEGER_BIN="$$(scripts/ensure-jaeger.sh)" COMPOSE_BIN="$$(scripts/ensure-compose.sh)" HELM_BIN="$$(scripts/ensure-helm.sh)" CHROMIUM_BIN="$$(scripts/ensure-chromium.sh)" PEBBLE_BIN="$$(scripts/ensure-pebble.sh)"

# External authorization tests (issue 18): real OPA servers.
TEST_ENV += OPA_BIN="$$(scripts/ensure-opa.sh)" OPA_EXTAUTHZ_BIN="$$(scripts/ensure-opa-extauthz.sh)"
test-only: opa

# OAuth2 introspection and OIDC login tests (issue 18): a real ORY Hydra.
TEST_ENV += HYDRA_BIN="$$(scripts/ensure-hydra.sh)"
test-only: hydra

test-only: consul redis jaeger haproxy soap compose helm chromium pebble
	$(TEST_ENV) $(GO) test -race -count=1 -timeout 15m -skip '^($(ALONE))$$' $(PKGS)
	# The Helm chart's test: a module of its own (k8s.io types), outside go.work.
	$(TEST_ENV) GOWORK=off $(GO) -C deployments/helm/test test -count=1 -timeout 5m ./...
	$(TEST_ENV) $(GO) test -race -count=1 -timeout 10m -p 1 -run '^($(ALONE))$$' ./dataplane/internal/ratelimit/ ./dataplane/e2e/

lint:
	@out="$$(gofmt -l shared controlplane dataplane deployments/helm/test scripts/tracewait)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	GOWORK=off $(GO) -C deployments/helm/test vet ./...
	GOWORK=off $(GO) -C scripts/tracewait vet ./...
	@test -x $(GOBIN_DIR)/staticcheck || $(GO) install $(STATICCHECK)
	$(GOBIN_DIR)/staticcheck $(PKGS)

fmt:
	gofmt -w shared controlplane dataplane

## chaos: the real topology (default flags) under load through a saturated cluster-wide
## limit, Redis stalled and killed, the Consul agent reset, a control-plane and a
## data-plane kill; prints a table (a measurement: make test runs a short version).
chaos: consul redis haproxy
	CONSUL_BIN="$$(scripts/ensure-consul.sh)" PORTICO_CHAOS=full $(GO) test -count=1 -timeout 20m -run '^TestChaos$$' -v ./dataplane/e2e/

## cluster: a local twin of a production deployment on loopback: Consul, Redis, two
## control planes, DATAPLANES data planes (default 2) behind HAProxy on :8080, demo services.
## scripts/cluster.sh scale N adds or removes data planes; make cluster-down stops it all.
cluster: build
	@scripts/cluster.sh up $(DATAPLANES)

cluster-down:
	@scripts/cluster.sh down

## bench: Go benchmarks (router, compile) and the admin-write → data-plane propagation run.
bench: bench-go bench-propagation bench-scale

bench-go: redis
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./dataplane/internal/router/ ./dataplane/internal/balancer/ ./dataplane/internal/proxy/ ./dataplane/internal/auth/ ./dataplane/internal/ratelimit/ ./dataplane/internal/cache/ ./dataplane/internal/grpcjson/ ./dataplane/internal/bodyschema/ ./dataplane/internal/ipfilter/

## bench-load: side-by-side load benchmark on loopback (wrk against the upstream, nginx,
## HAProxy, a bare Go reverse proxy, Portico; Traefik and Caddy, built once into ~/.cache/portico). Not in make test.
## ROUNDS, DURATION, CONNS, SCENARIOS tune it; see docs/PERFORMANCE.md.
bench-load: build
	@scripts/bench-load.sh

bench-propagation: consul redis
	$(GO) test -run '^$$' -bench '^BenchmarkPropagation$$' -benchtime 100x -count 1 -timeout 10m ./dataplane/e2e/

## bench-scale: propagation and request p99 during writes with 3 data planes
## holding BENCH_ROUTES routes (default 5000; "5000,100000" for both, heavy).
BENCH_ROUTES ?= 5000
bench-scale: consul redis
	PORTICO_BENCH_ROUTES=$(BENCH_ROUTES) $(GO) test -run '^$$' -bench '^BenchmarkPropagationScale$$' -benchtime 1x -count 1 -timeout 30m -v ./dataplane/e2e/

## fuzz: each fuzz target for a while; make test runs each for a fixed
## number of executions (fuzz-short) on top of their seed corpora in
## testdata/. A count, not a duration: Go 1.26's fuzz coordinator can report
## a spurious "context deadline exceeded" when a -fuzztime duration expires
## under CPU contention (golang/go#75804, fixed in Go 1.27), and a count has no
## deadline to race.
FUZZTIME ?= 60s
fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=10000x

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzMatch$$' -fuzztime $(FUZZTIME) ./dataplane/internal/router/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeConfig$$' -fuzztime $(FUZZTIME) ./shared/config/
	$(GO) test -run '^$$' -fuzz '^FuzzPathShape$$' -fuzztime $(FUZZTIME) ./shared/config/
	$(GO) test -run '^$$' -fuzz '^FuzzSnapshotDecode$$' -fuzztime $(FUZZTIME) ./shared/snapshot/
	$(GO) test -run '^$$' -fuzz '^FuzzClientIP$$' -fuzztime $(FUZZTIME) ./dataplane/internal/clientip/
	$(GO) test -run '^$$' -fuzz '^FuzzRateLimitKey$$' -fuzztime $(FUZZTIME) ./dataplane/internal/ratelimit/
	$(GO) test -run '^$$' -fuzz '^FuzzCompileAcceptsWhatValidateAccepts$$' -fuzztime $(FUZZTIME) ./dataplane/internal/proxy/
	$(GO) test -run '^$$' -fuzz '^FuzzJWTHeader$$' -fuzztime $(FUZZTIME) ./dataplane/internal/auth/
	$(GO) test -run '^$$' -fuzz '^FuzzBasicCredentials$$' -fuzztime $(FUZZTIME) ./dataplane/internal/auth/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeEntry$$' -fuzztime $(FUZZTIME) ./dataplane/internal/cache/
	$(GO) test -run '^$$' -fuzz '^FuzzCacheKey$$' -fuzztime $(FUZZTIME) ./dataplane/internal/cache/
	$(GO) test -run '^$$' -fuzz '^FuzzQueryParams$$' -fuzztime $(FUZZTIME) ./dataplane/internal/grpcjson/
	$(GO) test -run '^$$' -fuzz '^FuzzNormalize$$' -fuzztime $(FUZZTIME) ./dataplane/internal/authority/
	$(GO) test -run '^$$' -fuzz '^FuzzCompileAgreesWithValidate$$' -fuzztime $(FUZZTIME) ./dataplane/internal/tlsedge/
	$(GO) test -run '^$$' -fuzz '^FuzzParseXML$$' -fuzztime $(FUZZTIME) ./shared/wsdl/
	$(GO) test -run '^$$' -fuzz '^FuzzParseWSDL$$' -fuzztime $(FUZZTIME) ./shared/wsdl/
	$(GO) test -run '^$$' -fuzz '^FuzzAnswerJSON$$' -fuzztime $(FUZZTIME) ./dataplane/internal/soap/
	$(GO) test -run '^$$' -fuzz '^FuzzRequestXML$$' -fuzztime $(FUZZTIME) ./dataplane/internal/soap/
	$(GO) test -run '^$$' -fuzz '^FuzzApply$$' -fuzztime $(FUZZTIME) ./dataplane/internal/bodyedit/
	$(GO) test -run '^$$' -fuzz '^FuzzXMLToJSON$$' -fuzztime $(FUZZTIME) ./dataplane/internal/bodyedit/

## soak: mixed load and config churn through two data planes for
## PORTICO_SOAK_DURATION (default 10m, under the 20m timeout), checking that
## goroutines and RSS stay flat. Not part of make test.
soak: redis
	$(GO) test -tags soak -run TestSoak -timeout 20m -v ./dataplane/e2e/

clean:
	rm -rf $(BIN) .portico
