package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Decode reads exactly one JSON value from data into v, refusing unknown
// fields, trailing data and wrong types. A failure is a *ValidationError of
// kind ErrMalformed naming the offending field where the decoder knows it.
func Decode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return malformed(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return &ValidationError{Kind: ErrMalformed, Fields: []FieldError{{Message: "unexpected data after the JSON value"}}}
	}
	return nil
}

func malformed(err error) error {
	var (
		syntax  *json.SyntaxError
		typeErr *json.UnmarshalTypeError
		fe      FieldError
	)
	switch {
	case errors.As(err, &syntax):
		fe = FieldError{Message: fmt.Sprintf("invalid JSON at byte %d: %s", syntax.Offset, syntax.Error())}
	case errors.As(err, &typeErr) && typeErr.Type == durationType:
		fe = FieldError{Field: typeErr.Field, Message: fmt.Sprintf("must be a non-negative duration such as \"30s\" or \"250ms\", not %s", typeErr.Value)}
	case errors.As(err, &typeErr):
		fe = FieldError{Field: typeErr.Field, Message: fmt.Sprintf("must be %s, not %s", jsonTypeName(typeErr.Type.Kind().String()), typeErr.Value)}
	case errors.Is(err, io.EOF):
		fe = FieldError{Message: "empty body: a JSON object is required"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		fe = FieldError{Message: "truncated JSON"}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json reports unknown fields only as text.
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		fe = FieldError{Field: name, Message: "unknown field"}
	default:
		fe = FieldError{Message: err.Error()}
	}
	return &ValidationError{Kind: ErrMalformed, Fields: []FieldError{fe}}
}

func jsonTypeName(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "slice", "array":
		return "an array"
	case "struct", "map":
		return "an object"
	case "bool":
		return "a boolean"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
		return "a number"
	}
	return "of type " + goKind
}
