package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// createKey calls POST /v1/consumers/{name}/api-keys and returns id and key.
func createKey(t *testing.T, cpURL, consumer string) (id, key string) {
	t.Helper()
	req, _ := http.NewRequest("POST", cpURL+"/v1/consumers/"+consumer+"/api-keys", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ ID, Key string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 201 {
		t.Fatalf("create key: %d %v", resp.StatusCode, err)
	}
	return out.ID, out.Key
}

func revokeKey(t *testing.T, cpURL, consumer, id string) {
	t.Helper()
	req, _ := http.NewRequest("DELETE", cpURL+"/v1/consumers/"+consumer+"/api-keys/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := httpc.Do(req)
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("revoke key: %v %v", resp, err)
	}
	resp.Body.Close()
}

func withKey(url, key string) int {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("X-API-Key", key)
	resp, err := httpc.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestAPIKeyLifecycle: keys created, rotated and revoked through the admin
// API take effect on every data plane; a data plane only ever holds hashes.
func TestAPIKeyLifecycle(t *testing.T) {
	ctx := context.Background()
	up := startUpstream(t, "keyed-svc")
	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	dps := []*dataPlane{
		startDataPlane(t, "dp-1", cp.url, filepath.Join(dir, "dp-1")),
		startDataPlane(t, "dp-2", cp.url, filepath.Join(dir, "dp-2")),
	}
	if _, _, err := cp.admin.Services().Put(ctx, "s", svc(up)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Consumers().Put(ctx, "alice", config.Consumer{Groups: []string{"staff"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Routes().Put(ctx, "keyed", config.Route{Paths: []string{"/keyed"}, Service: "s",
		Auth: &config.RouteAuth{APIKey: true, Groups: []string{"staff"}}}); err != nil {
		t.Fatal(err)
	}
	id1, key1 := createKey(t, cp.url, "alice")
	for _, dp := range dps {
		testutil.Eventually(t, 10*time.Second, func() bool { return withKey(dp.url+"/keyed", key1) == 200 }, dp.id+" accepting the new key")
		if code := withKey(dp.url+"/keyed", "pk_forged"); code != 401 {
			t.Fatalf("%s: forged key got %d", dp.id, code)
		}
	}
	// Rotation: a second key, then the first revoked.
	_, key2 := createKey(t, cp.url, "alice")
	revokeKey(t, cp.url, "alice", id1)
	for _, dp := range dps {
		testutil.Eventually(t, 10*time.Second, func() bool {
			return withKey(dp.url+"/keyed", key1) == 401 && withKey(dp.url+"/keyed", key2) == 200
		}, dp.id+" refusing the revoked key and accepting its replacement")
		// The data plane's state (its copy of the configuration) holds
		// hashes, never keys.
		_, state := get(dp.ops + "/status")
		raw, _ := readState(dp.stateDir)
		if strings.Contains(raw, key2) || strings.Contains(state, key2) {
			t.Fatalf("%s stores the key in clear", dp.id)
		}
	}
	// Out of the group: 403.
	if _, _, err := cp.admin.Consumers().Put(ctx, "alice", config.Consumer{Groups: []string{"guests"}}); err != nil {
		t.Fatal(err)
	}
	for _, dp := range dps {
		testutil.Eventually(t, 10*time.Second, func() bool { return withKey(dp.url+"/keyed", key2) == 403 }, dp.id+" applying the group change")
	}
}

func readState(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "snapshot.json"))
	return string(b), err
}
