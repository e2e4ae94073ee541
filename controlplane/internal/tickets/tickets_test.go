package tickets

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/testutil"
)

// counter is a deterministic source of key bytes: key n is n repeated.
type counter struct{ n byte }

func (c *counter) Read(p []byte) (int, error) {
	c.n++
	for i := range p {
		p[i] = c.n
	}
	return len(p), nil
}

var t0 = time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)

func key(n byte, active time.Time) Key {
	var k Key
	for i := range k.Key {
		k.Key[i] = n
	}
	k.Active = active
	return k
}

// ids names keys by their first byte, newest first.
func ids(keys []Key) []byte {
	out := make([]byte, len(keys))
	for i, k := range keys {
		out[i] = k.Key[0]
	}
	return out
}

func orderIDs(keys apiv1.TicketKeys) []byte {
	out := make([]byte, len(keys))
	for i, k := range keys {
		out[i] = k[0]
	}
	return out
}

var policy = Policy{Rotation: 6 * time.Hour, Keep: 24 * time.Hour}

func TestPlan(t *testing.T) {
	h := time.Hour
	cases := []struct {
		name string
		keys []Key
		now  time.Time
		// want: key ids (newest first) after the plan; new keys are
		// numbered from 1 by the counter.
		want    []byte
		active  []time.Time // of want, in order
		changed bool
		order   []byte // Order at now
	}{
		{name: "first start makes the encrypting key and the next one",
			now: t0, want: []byte{2, 1}, active: []time.Time{t0.Add(6 * h), t0}, changed: true, order: []byte{1, 2}},
		{name: "within the rotation nothing changes",
			keys: []Key{key(20, t0.Add(6*h)), key(10, t0)}, now: t0.Add(5 * h),
			want: []byte{20, 10}, active: []time.Time{t0.Add(6 * h), t0}, order: []byte{10, 20}},
		{name: "the next key takes over and a new next is made a rotation ahead",
			keys: []Key{key(20, t0.Add(6*h)), key(10, t0)}, now: t0.Add(6 * h),
			want: []byte{1, 20, 10}, active: []time.Time{t0.Add(12 * h), t0.Add(6 * h), t0}, changed: true, order: []byte{20, 1, 10}},
		{name: "a retired key decrypts until Keep after it stopped encrypting",
			keys: []Key{key(40, t0.Add(30*h)), key(30, t0.Add(24*h)), key(20, t0.Add(6*h)), key(10, t0)}, now: t0.Add(30*h - time.Nanosecond),
			want: []byte{40, 30, 20, 10}, active: []time.Time{t0.Add(30 * h), t0.Add(24 * h), t0.Add(6 * h), t0}, order: []byte{30, 40, 20, 10}},
		{name: "and is deleted then",
			keys: []Key{key(50, t0.Add(36*h)), key(40, t0.Add(30*h)), key(30, t0.Add(24*h)), key(20, t0.Add(6*h)), key(10, t0)}, now: t0.Add(30 * h),
			want: []byte{50, 40, 30, 20}, active: []time.Time{t0.Add(36 * h), t0.Add(30 * h), t0.Add(24 * h), t0.Add(6 * h)}, changed: true, order: []byte{40, 50, 30, 20}},
		{name: "a control plane down for days makes a fresh key rather than encrypt with a stale one",
			keys: []Key{key(20, t0.Add(6*h)), key(10, t0)}, now: t0.Add(100 * h),
			// Key 20 encrypted on the data planes until now: kept Keep more.
			want: []byte{2, 1, 20}, active: []time.Time{t0.Add(106 * h), t0.Add(100 * h), t0.Add(6 * h)}, changed: true, order: []byte{1, 2, 20}},
		{name: "down for less than Keep: every key still decrypts",
			keys: []Key{key(20, t0.Add(6*h)), key(10, t0)}, now: t0.Add(20 * h),
			want: []byte{2, 1, 20, 10}, active: []time.Time{t0.Add(26 * h), t0.Add(20 * h), t0.Add(6 * h), t0}, changed: true, order: []byte{1, 2, 20, 10}},
		{name: "a clock that went back makes no key and encrypts with the oldest",
			keys: []Key{key(20, t0.Add(6*h)), key(10, t0)}, now: t0.Add(-h),
			want: []byte{20, 10}, active: []time.Time{t0.Add(6 * h), t0}, order: []byte{10, 20}},
		{name: "keys stored out of order are sorted",
			keys: []Key{key(10, t0), key(20, t0.Add(6*h))}, now: t0.Add(h),
			want: []byte{20, 10}, active: []time.Time{t0.Add(6 * h), t0}, changed: true, order: []byte{10, 20}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, changed, err := Plan(tc.keys, tc.now, policy, &counter{})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ids(got), tc.want) || changed != tc.changed {
				t.Fatalf("Plan = %v changed %v, want %v changed %v", ids(got), changed, tc.want, tc.changed)
			}
			for i, k := range got {
				if !k.Active.Equal(tc.active[i]) {
					t.Errorf("key %d active %s, want %s", k.Key[0], k.Active, tc.active[i])
				}
			}
			if o := orderIDs(Order(got, tc.now)); !bytes.Equal(o, tc.order) {
				t.Errorf("Order = %v, want %v", o, tc.order)
			}
			// A plan is stable: planning again at the same time changes nothing.
			again, changed, _ := Plan(got, tc.now, policy, &counter{n: 100})
			if changed || !slices.Equal(again, got) {
				t.Errorf("planning twice changed %v into %v", ids(got), ids(again))
			}
		})
	}
}

// TestPlanOverTime walks a week in steps of a few minutes: at every step
// the encrypting key was shipped at least a rotation before it encrypts,
// every key that encrypted at some time still decrypts Keep after it
// stopped, and the set never exceeds the policy's bound.
func TestPlanOverTime(t *testing.T) {
	for _, p := range []Policy{policy, {Rotation: time.Hour, Keep: 0}, {Rotation: 3 * time.Second, Keep: time.Minute}, {Rotation: 24 * time.Hour, Keep: MaxKeep}} {
		t.Run(p.Rotation.String()+"/"+p.Keep.String(), func(t *testing.T) {
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			step := max(p.Rotation/7, time.Second)
			var keys []Key
			firstSeen := map[Bytes]time.Time{}
			stopped := map[Bytes]time.Time{}
			var prevEnc Bytes
			rnd := &counter{}
			for now := t0; now.Before(t0.Add(20 * p.Rotation)); now = now.Add(step) {
				var err error
				if keys, _, err = Plan(keys, now, p, rnd); err != nil {
					t.Fatal(err)
				}
				if len(keys) > p.maxKeys() {
					t.Fatalf("%s: %d keys, bound %d", now, len(keys), p.maxKeys())
				}
				held := map[Bytes]bool{}
				for _, k := range keys {
					held[k.Key] = true
					if _, ok := firstSeen[k.Key]; !ok {
						firstSeen[k.Key] = now
					}
				}
				enc := Bytes(Order(keys, now)[0])
				if enc != prevEnc {
					if now.After(t0) && now.Sub(firstSeen[enc]) < p.Rotation-step {
						t.Fatalf("%s: key %d encrypts %s after it was shipped", now, enc[0], now.Sub(firstSeen[enc]))
					}
					if now.After(t0) {
						// It stopped when its successor became active.
						i := slices.IndexFunc(keys, func(k Key) bool { return k.Key == enc })
						stopped[prevEnc] = keys[i].Active
					}
					prevEnc = enc
				}
				for k, at := range stopped {
					if now.Sub(at) < p.Keep && !held[k] {
						t.Fatalf("%s: key %d dropped %s after it stopped encrypting (keep %s)", now, k[0], now.Sub(at), p.Keep)
					}
					if now.Sub(at) >= p.Keep+step && held[k] {
						t.Fatalf("%s: key %d still held %s after it stopped encrypting (keep %s)", now, k[0], now.Sub(at), p.Keep)
					}
				}
			}
		})
	}
}

func TestNextChange(t *testing.T) {
	h := time.Hour
	keys := []Key{key(30, t0.Add(12*h)), key(20, t0.Add(6*h)), key(10, t0)}
	cases := []struct {
		now, want time.Time
	}{
		{t0.Add(7 * h), t0.Add(12 * h)},  // the next key starts encrypting
		{t0.Add(13 * h), t0.Add(18 * h)}, // stale encrypting key (a plan adds one)
		{t0.Add(-h), t0},                 // clock went back: the first key activates
	}
	for _, tc := range cases {
		if got := NextChange(keys, tc.now, policy); !got.Equal(tc.want) {
			t.Errorf("NextChange at %s = %s, want %s", tc.now, got, tc.want)
		}
	}
	if got := NextChange(nil, t0, policy); !got.IsZero() {
		t.Errorf("no keys: %s", got)
	}
}

func TestPolicyValidate(t *testing.T) {
	cases := []struct {
		p    Policy
		want string
	}{
		{Policy{Rotation: DefaultRotation, Keep: DefaultKeep}, ""},
		{Policy{Rotation: time.Millisecond, Keep: time.Hour}, "--tls-ticket-rotation"},
		{Policy{Rotation: time.Hour, Keep: 8 * 24 * time.Hour}, "--tls-ticket-keep"},
		{Policy{Rotation: time.Minute, Keep: 24 * time.Hour}, "at most 32 keys"},
	}
	for _, tc := range cases {
		err := tc.p.Validate()
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.p, err, tc.want)
		}
	}
}

// TestKeeper runs the keeper's steps on both real stores (bolt, and a
// Consul agent shared by two control planes) with an injected clock: the
// holder of the lease makes and rotates the keys, another replica reading
// the store publishes the same header, and the stored form round-trips.
func TestKeeper(t *testing.T) {
	t.Run("bolt", func(t *testing.T) {
		st, err := store.OpenBolt(filepath.Join(t.TempDir(), "cp.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		keeperScenario(t, st, st)
	})
	t.Run("consul", func(t *testing.T) {
		agent := testutil.StartConsul(t)
		open := func() store.Store {
			st, err := store.OpenConsul(t.Context(), "consul://"+agent.Addr+"/portico-tickets-test")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}
		keeperScenario(t, open(), open())
	})
}

func keeperScenario(t *testing.T, st, other store.Store) {
	ctx := context.Background()
	now := t0
	clock := func() time.Time { return now }
	leader, err := New(Options{Store: st, Policy: policy, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	replica, _ := New(Options{Store: other, Policy: policy, Now: clock})
	if leader.Header() != "" {
		t.Fatal("a header before any keys")
	}
	if err := replica.Refresh(ctx); err != nil || replica.Header() != "" {
		t.Fatalf("a replica with nothing stored: %q %v", replica.Header(), err)
	}
	if err := leader.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	first, err := apiv1.DecodeTicketKeys(leader.Header())
	if err != nil || len(first) != 2 {
		t.Fatalf("first keys: %v %v", first, err)
	}
	if err := replica.Refresh(ctx); err != nil || replica.Header() != leader.Header() {
		t.Fatalf("the replica publishes other keys: %v", err)
	}
	now = now.Add(policy.Rotation)
	if err := leader.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	second, _ := apiv1.DecodeTicketKeys(leader.Header())
	if len(second) != 3 || second[0] != first[1] || second[2] != first[0] {
		t.Fatalf("after a rotation: %v, from %v", second, first)
	}
	if err := replica.Refresh(ctx); err != nil || replica.Header() != leader.Header() {
		t.Fatalf("the replica did not follow the rotation: %v", err)
	}
	raw, ok, err := other.(store.Secrets).GetSecret(ctx, SecretName)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	set, err := DecodeSet(raw)
	if err != nil || len(set.Keys) != 3 {
		t.Fatalf("stored: %d keys, %v", len(set.Keys), err)
	}
	if _, err := DecodeSet([]byte(`{"keys":[{"key":"c2hvcnQ=","active":"2026-12-03T00:00:00Z"}]}`)); err == nil {
		t.Error("a short stored key was read")
	}
}
