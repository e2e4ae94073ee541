package grpcjson

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// maxPathDepth bounds dotted paths: recursive messages would otherwise let
// one query parameter allocate a message per segment without limit.
const maxPathDepth = 32

// fieldError is a value the client sent that does not fit the message.
type fieldError struct {
	path string
	msg  string
}

func (e *fieldError) Error() string { return e.path + ": " + e.msg }

// findField resolves a dotted path (proto or JSON field names) to the
// message holding the last field and that field; (nil, nil, nil) when a
// segment names no field. Intermediate fields must be singular messages.
// They are created (mutable) only once the whole path resolved, so an
// unknown parameter leaves no empty message behind.
func findField(m protoreflect.Message, path string) (protoreflect.Message, protoreflect.FieldDescriptor, error) {
	if path == "" {
		return nil, nil, &fieldError{path, "empty field name"}
	}
	segs := strings.Split(path, ".")
	if len(segs) > maxPathDepth {
		return nil, nil, &fieldError{path, fmt.Sprintf("more than %d nested fields", maxPathDepth)}
	}
	chain := make([]protoreflect.FieldDescriptor, 0, len(segs))
	md := m.Descriptor()
	for i, s := range segs {
		fields := md.Fields()
		fd := fields.ByName(protoreflect.Name(s))
		if fd == nil {
			fd = fields.ByJSONName(s)
		}
		if fd == nil {
			return nil, nil, nil
		}
		chain = append(chain, fd)
		if i == len(segs)-1 {
			break
		}
		if fd.Message() == nil || fd.IsList() || fd.IsMap() {
			return nil, nil, &fieldError{path, fmt.Sprintf("%s is not a message field, so it has no field %s", strings.Join(segs[:i+1], "."), segs[i+1])}
		}
		md = fd.Message()
	}
	for _, fd := range chain[:len(chain)-1] {
		m = m.Mutable(fd).Message()
	}
	return m, chain[len(chain)-1], nil
}

// setField sets the field at path from string values (query or path
// parameters). A path naming no field returns (false, nil): like
// grpc-gateway, unknown parameters are ignored, because clients and caches
// add their own (cache busters, tracking parameters).
func setField(m protoreflect.Message, path string, values []string) (bool, error) {
	owner, fd, err := findField(m, path)
	if err != nil || fd == nil {
		return false, err
	}
	switch {
	case fd.IsMap():
		return false, &fieldError{path, "map fields cannot be set from parameters; send them in the JSON body"}
	case fd.IsList():
		// A parameter replaces what the body said, as for singular fields.
		owner.Clear(fd)
		list := owner.Mutable(fd).List()
		for _, v := range values {
			pv, err := parseValue(fd, list.NewElement, v)
			if err != nil {
				return false, &fieldError{path, err.Error()}
			}
			list.Append(pv)
		}
		return true, nil
	}
	if len(values) != 1 {
		return false, &fieldError{path, fmt.Sprintf("takes one value, got %d", len(values))}
	}
	pv, err := parseValue(fd, func() protoreflect.Value { return owner.NewField(fd) }, values[0])
	if err != nil {
		return false, &fieldError{path, err.Error()}
	}
	owner.Set(fd, pv)
	return true, nil
}

// parseValue converts one string to a value of fd's kind. newMsg makes an
// empty message of fd's type, for message-typed fields.
func parseValue(fd protoreflect.FieldDescriptor, newMsg func() protoreflect.Value, s string) (protoreflect.Value, error) {
	bad := func(what string) (protoreflect.Value, error) {
		return protoreflect.Value{}, fmt.Errorf("%q is not %s", s, what)
	}
	switch fd.Kind() {
	case protoreflect.StringKind:
		// Checked here, not left to the codec: an invalid string would
		// fail marshalling only at call time, as an internal error.
		if !utf8.ValidString(s) {
			return bad("valid UTF-8")
		}
		return protoreflect.ValueOfString(s), nil
	case protoreflect.BoolKind:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return bad("a boolean (true or false)")
		}
		return protoreflect.ValueOfBool(b), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return bad("a 32-bit integer")
		}
		return protoreflect.ValueOfInt32(int32(n)), nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return bad("a 64-bit integer")
		}
		return protoreflect.ValueOfInt64(n), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return bad("an unsigned 32-bit integer")
		}
		return protoreflect.ValueOfUint32(uint32(n)), nil
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return bad("an unsigned 64-bit integer")
		}
		return protoreflect.ValueOfUint64(n), nil
	case protoreflect.FloatKind:
		f, err := strconv.ParseFloat(s, 32)
		if err != nil {
			return bad("a number")
		}
		return protoreflect.ValueOfFloat32(float32(f)), nil
	case protoreflect.DoubleKind:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return bad("a number")
		}
		return protoreflect.ValueOfFloat64(f), nil
	case protoreflect.BytesKind:
		// The JSON mapping accepts standard and URL-safe base64, padded
		// or not; so do parameters.
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			if b, err := enc.DecodeString(s); err == nil {
				return protoreflect.ValueOfBytes(b), nil
			}
		}
		return bad("base64")
	case protoreflect.EnumKind:
		ed := fd.Enum()
		if v := ed.Values().ByName(protoreflect.Name(s)); v != nil {
			return protoreflect.ValueOfEnum(v.Number()), nil
		}
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil || (ed.IsClosed() && ed.Values().ByNumber(protoreflect.EnumNumber(n)) == nil) {
			return bad("a value of " + string(ed.FullName()))
		}
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(n)), nil
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return parseMessage(fd.Message(), newMsg, s)
	}
	return protoreflect.Value{}, fmt.Errorf("fields of kind %s cannot be set from parameters", fd.Kind())
}

// parseMessage accepts the well-known types whose JSON form is a scalar:
// Timestamp, Duration and FieldMask (strings) and the wrappers.
func parseMessage(md protoreflect.MessageDescriptor, newMsg func() protoreflect.Value, s string) (protoreflect.Value, error) {
	v := newMsg()
	m := v.Message()
	switch md.FullName() {
	case "google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask":
		// protojson parses these from their JSON strings; quoting makes s
		// one, whatever it contains.
		if err := protojson.Unmarshal(strconv.AppendQuote(nil, s), m.Interface()); err != nil {
			return protoreflect.Value{}, fmt.Errorf("%q is not a valid %s", s, md.Name())
		}
		return v, nil
	case "google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value",
		"google.protobuf.UInt64Value", "google.protobuf.Int32Value", "google.protobuf.UInt32Value",
		"google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue":
		inner := md.Fields().ByName("value")
		if inner == nil {
			break
		}
		iv, err := parseValue(inner, nil, s)
		if err != nil {
			return protoreflect.Value{}, err
		}
		m.Set(inner, iv)
		return v, nil
	}
	return protoreflect.Value{}, fmt.Errorf("is a message (%s); set its fields with dotted names", md.FullName())
}
