package envflag

import (
	"testing"
	"time"
)

func TestEnvTwins(t *testing.T) {
	t.Setenv("X_NAME", "from-env")
	t.Setenv("X_ON", "true")
	t.Setenv("X_WAIT", "2s")
	fs := New("t")
	name := fs.String("name", "X_NAME", "default", "")
	on := fs.Bool("on", "X_ON", false, "")
	wait := fs.Duration("wait", "X_WAIT", time.Second, "")
	other := fs.String("other", "X_UNSET_FOR_TEST", "default", "")
	if err := fs.Parse([]string{"--wait", "3s"}); err != nil {
		t.Fatal(err)
	}
	if *name != "from-env" || !*on || *wait != 3*time.Second || *other != "default" {
		t.Fatalf("name=%q on=%v wait=%v other=%q: env sets defaults, flags win", *name, *on, *wait, *other)
	}
}

func TestBadEnvIsAnError(t *testing.T) {
	t.Setenv("X_WAIT", "soon")
	fs := New("t")
	fs.Duration("wait", "X_WAIT", time.Second, "")
	if err := fs.Parse(nil); err == nil {
		t.Fatal("an unparsable env value was ignored")
	}
}
