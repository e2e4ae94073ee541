package config

import (
	"errors"
	"testing"
	"time"
)

func TestFaultValidate(t *testing.T) {
	tests := []struct {
		name  string
		fault Fault
		field string // "" = valid
	}{
		{"both", Fault{Delay: &FaultDelay{Percent: 10, Duration: Duration(200 * time.Millisecond)}, Abort: &FaultAbort{Percent: 1, Status: 503}, Header: "X-Drill"}, ""},
		{"empty", Fault{}, "fault"},
		{"percent", Fault{Abort: &FaultAbort{Percent: 0, Status: 503}}, "fault.abort.percent"},
		{"status", Fault{Abort: &FaultAbort{Percent: 5, Status: 200}}, "fault.abort.status"},
		{"no duration", Fault{Delay: &FaultDelay{Percent: 5}}, "fault.delay.duration"},
		{"long delay", Fault{Delay: &FaultDelay{Percent: 5, Duration: Duration(2 * time.Minute)}}, "fault.delay.duration"},
		{"bad header", Fault{Abort: &FaultAbort{Percent: 5, Status: 500}, Header: "X Drill"}, "fault.header"},
		{"owned header", Fault{Abort: &FaultAbort{Percent: 5, Status: 500}, Header: "host"}, "fault.header"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.fault
			r := Route{Name: "r", Paths: []string{"/"}, Service: "s", Fault: &f}
			err := r.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v", err)
			}
			for _, fe := range FieldErrors(err) {
				if fe.Field == tc.field {
					return
				}
			}
			t.Fatalf("error %v does not name %s", err, tc.field)
		})
	}
}
