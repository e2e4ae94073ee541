// Package envflag defines command-line flags that take their default from an
// environment variable, so every flag of the Portico binaries has an env twin
// (containers are configured with env, people with flags; the flag wins).
package envflag

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Set wraps a flag.FlagSet and collects errors in env values, which are only
// reported by Parse so that a bad variable is never silently ignored.
type Set struct {
	*flag.FlagSet
	errs []error
}

// New returns a Set for the named program.
func New(name string) *Set {
	return &Set{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError)}
}

func usage(u, env string) string { return fmt.Sprintf("%s (env %s)", u, env) }

// String defines a string flag.
func (s *Set) String(name, env, def, u string) *string {
	if v, ok := os.LookupEnv(env); ok {
		def = v
	}
	return s.FlagSet.String(name, def, usage(u, env))
}

// Bool defines a boolean flag.
func (s *Set) Bool(name, env string, def bool, u string) *bool {
	if v, ok := os.LookupEnv(env); ok && v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("env %s=%q: want true or false", env, v))
		}
		def = b
	}
	return s.FlagSet.Bool(name, def, usage(u, env))
}

// Duration defines a duration flag.
func (s *Set) Duration(name, env string, def time.Duration, u string) *time.Duration {
	if v, ok := os.LookupEnv(env); ok && v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("env %s=%q: want a duration such as 30s", env, v))
		}
		def = d
	}
	return s.FlagSet.Duration(name, def, usage(u, env))
}

// Float64 defines a floating-point flag.
func (s *Set) Float64(name, env string, def float64, u string) *float64 {
	if v, ok := os.LookupEnv(env); ok && v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("env %s=%q: want a number", env, v))
		}
		def = f
	}
	return s.FlagSet.Float64(name, def, usage(u, env))
}

// Int64 defines an integer flag.
func (s *Set) Int64(name, env string, def int64, u string) *int64 {
	if v, ok := os.LookupEnv(env); ok && v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("env %s=%q: want an integer", env, v))
		}
		def = n
	}
	return s.FlagSet.Int64(name, def, usage(u, env))
}

// Parse parses args and reports the first bad environment value.
func (s *Set) Parse(args []string) error {
	if len(s.errs) > 0 {
		return s.errs[0]
	}
	return s.FlagSet.Parse(args)
}
