package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Sentinel errors classify what went wrong so that the admin API can map them
// to HTTP statuses with errors.Is.
var (
	// ErrInvalid: a value breaks a rule of its own field (422).
	ErrInvalid = errors.New("invalid configuration")
	// ErrConflict: the config as a whole is inconsistent: duplicate names,
	// ambiguous routes, references to missing objects, objects still in use (409).
	ErrConflict = errors.New("configuration conflict")
	// ErrMalformed: the input could not be decoded at all (400).
	ErrMalformed = errors.New("malformed input")
)

// FieldError names one field that failed and why.
type FieldError struct {
	// Field is a path into the submitted document, e.g. "targets[0].url".
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (f FieldError) Error() string {
	if f.Field == "" {
		return f.Message
	}
	return f.Field + ": " + f.Message
}

// ValidationError carries every field that failed, so a client can fix them
// all at once. Kind is ErrInvalid, ErrConflict or ErrMalformed.
type ValidationError struct {
	Kind   error
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Error()
	}
	return fmt.Sprintf("%v: %s", e.Kind, strings.Join(parts, "; "))
}

// Unwrap lets errors.Is(err, ErrInvalid) and friends work.
func (e *ValidationError) Unwrap() error { return e.Kind }

// FieldErrors returns the failing fields of err, or nil.
func FieldErrors(err error) []FieldError {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return ve.Fields
	}
	return nil
}

// errorList accumulates field errors of two severities while validating.
type errorList struct {
	invalid  []FieldError
	conflict []FieldError
}

func (l *errorList) add(field, format string, args ...any) {
	l.invalid = append(l.invalid, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

func (l *errorList) conflictf(field, format string, args ...any) {
	l.conflict = append(l.conflict, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// err reports invalid fields first: a conflict found among objects that are
// themselves invalid is usually a consequence, not the cause.
func (l *errorList) err() error {
	switch {
	case len(l.invalid) > 0:
		return &ValidationError{Kind: ErrInvalid, Fields: sorted(l.invalid)}
	case len(l.conflict) > 0:
		return &ValidationError{Kind: ErrConflict, Fields: sorted(l.conflict)}
	}
	return nil
}

func sorted(f []FieldError) []FieldError {
	sort.SliceStable(f, func(i, j int) bool { return f[i].Field < f[j].Field })
	return f
}

// Conflict builds a conflict error on one field.
func Conflict(field, format string, args ...any) error {
	return &ValidationError{Kind: ErrConflict, Fields: []FieldError{{Field: field, Message: fmt.Sprintf(format, args...)}}}
}

// Invalid builds an invalid-value error on one field.
func Invalid(field, format string, args ...any) error {
	return &ValidationError{Kind: ErrInvalid, Fields: []FieldError{{Field: field, Message: fmt.Sprintf(format, args...)}}}
}

func join(prefix, field string) string {
	switch {
	case prefix == "":
		return field
	case field == "":
		return prefix
	case strings.HasPrefix(field, "["):
		return prefix + field
	}
	return prefix + "." + field
}
