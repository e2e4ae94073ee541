package wsdl

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// XSD is the XML Schema namespace.
const XSD = "http://www.w3.org/2001/XMLSchema"

// Builtin is the XSD primitive a simple type's values are checked against.
type Builtin uint8

// The built-in kinds. Derived built-ins map onto these (token, NCName...
// are strings; int, unsignedShort... are integers with bounds).
const (
	String Builtin = iota
	Boolean
	Integer
	Decimal
	Float // float and double
	Date
	DateTime
	Time
	Duration
	Base64
	Hex
	AnyType // anything: text in, text out
)

var builtinNames = [...]string{"string", "boolean", "integer", "decimal", "double", "date", "dateTime", "time", "duration", "base64Binary", "hexBinary", "anyType"}

func (b Builtin) String() string { return builtinNames[b] }

// Numeric tells whether values of b are JSON numbers.
func (b Builtin) Numeric() bool { return b == Integer || b == Decimal || b == Float }

// intRange is an integer type's bounds (nil: unbounded on that side).
type intRange struct{ min, max *big.Int }

func bigOf(s string) *big.Int {
	v, _ := new(big.Int).SetString(s, 10)
	return v
}

var integerRanges = map[string]intRange{
	"integer":            {},
	"long":               {bigOf("-9223372036854775808"), bigOf("9223372036854775807")},
	"int":                {bigOf("-2147483648"), bigOf("2147483647")},
	"short":              {bigOf("-32768"), bigOf("32767")},
	"byte":               {bigOf("-128"), bigOf("127")},
	"nonNegativeInteger": {bigOf("0"), nil},
	"positiveInteger":    {bigOf("1"), nil},
	"nonPositiveInteger": {nil, bigOf("0")},
	"negativeInteger":    {nil, bigOf("-1")},
	"unsignedLong":       {bigOf("0"), bigOf("18446744073709551615")},
	"unsignedInt":        {bigOf("0"), bigOf("4294967295")},
	"unsignedShort":      {bigOf("0"), bigOf("65535")},
	"unsignedByte":       {bigOf("0"), bigOf("255")},
}

// builtinType returns the type of the XSD built-in local name, or nil.
func builtinType(local string) *Type {
	t := &Type{Name: xmlName(XSD, local), Simple: true}
	if r, ok := integerRanges[local]; ok {
		t.Builtin, t.min, t.max = Integer, r.min, r.max
		return t
	}
	switch local {
	case "string", "normalizedString", "token", "language", "Name", "NCName", "NMTOKEN", "NMTOKENS",
		"ID", "IDREF", "IDREFS", "ENTITY", "ENTITIES", "anyURI", "QName", "NOTATION", "anySimpleType",
		"gYear", "gYearMonth", "gMonth", "gMonthDay", "gDay":
		t.Builtin = String
	case "boolean":
		t.Builtin = Boolean
	case "decimal":
		t.Builtin = Decimal
	case "float", "double":
		t.Builtin = Float
	case "date":
		t.Builtin = Date
	case "dateTime":
		t.Builtin = DateTime
	case "time":
		t.Builtin = Time
	case "duration":
		t.Builtin = Duration
	case "base64Binary":
		t.Builtin = Base64
	case "hexBinary":
		t.Builtin = Hex
	case "anyType":
		t.Builtin, t.Simple, t.Open = AnyType, false, true
	default:
		return nil
	}
	return t
}

var (
	reInteger  = regexp.MustCompile(`^[+-]?[0-9]+$`)
	reDecimal  = regexp.MustCompile(`^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$`)
	reFloat    = regexp.MustCompile(`^([+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?|-?INF|\+INF|NaN)$`)
	reTZ       = `(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))?`
	reDate     = regexp.MustCompile(`^-?[0-9]{4,}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])` + reTZ + `$`)
	reTime     = regexp.MustCompile(`^(([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?|24:00:00(\.0+)?)` + reTZ + `$`)
	reDateTime = regexp.MustCompile(`^-?[0-9]{4,}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T(([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?|24:00:00(\.0+)?)` + reTZ + `$`)
	reDuration = regexp.MustCompile(`^-?P([0-9]+Y)?([0-9]+M)?([0-9]+D)?(T([0-9]+H)?([0-9]+M)?([0-9]+(\.[0-9]+)?S)?)?$`)
)

// Check tells whether the text s (whitespace already collapsed where the
// type collapses it) is a value of simple type t: its primitive's lexical
// space, an integer type's bounds, its enumeration.
func (t *Type) Check(s string) error {
	switch t.Builtin {
	case Boolean:
		switch s {
		case "true", "false", "1", "0":
		default:
			return fmt.Errorf("%q is not a boolean", s)
		}
	case Integer:
		if !reInteger.MatchString(s) {
			return fmt.Errorf("%q is not an integer", s)
		}
		v, _ := new(big.Int).SetString(strings.TrimPrefix(s, "+"), 10)
		if t.min != nil && v.Cmp(t.min) < 0 || t.max != nil && v.Cmp(t.max) > 0 {
			return fmt.Errorf("%s is out of range for %s", s, t.describe())
		}
	case Decimal:
		if !reDecimal.MatchString(s) {
			return fmt.Errorf("%q is not a decimal number", s)
		}
	case Float:
		if !reFloat.MatchString(s) {
			return fmt.Errorf("%q is not a floating-point number", s)
		}
	case Date:
		if !reDate.MatchString(s) || !validDay(s) {
			return fmt.Errorf("%q is not a date (YYYY-MM-DD)", s)
		}
	case DateTime:
		if !reDateTime.MatchString(s) || !validDay(s) {
			return fmt.Errorf("%q is not a date-time (YYYY-MM-DDThh:mm:ss)", s)
		}
	case Time:
		if !reTime.MatchString(s) {
			return fmt.Errorf("%q is not a time (hh:mm:ss)", s)
		}
	case Duration:
		if !reDuration.MatchString(s) || strings.HasSuffix(s, "P") || strings.HasSuffix(s, "T") {
			return fmt.Errorf("%q is not a duration (PnYnMnDTnHnMnS)", s)
		}
	case Base64:
		if _, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), "")); err != nil {
			return fmt.Errorf("%q is not base64", s)
		}
	case Hex:
		if _, err := hex.DecodeString(s); err != nil {
			return fmt.Errorf("%q is not hexadecimal", s)
		}
	}
	if len(t.Enum) > 0 {
		for _, e := range t.Enum {
			if e == s {
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", s, strings.Join(quoteAll(t.Enum), ", "))
	}
	return nil
}

// validDay checks the day of a date against its month (Feb 30 is refused).
func validDay(s string) bool {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	i := strings.IndexByte(s, '-')
	if i < 4 || len(s) < i+6 {
		return false
	}
	y, err := strconv.Atoi(s[:i])
	if err != nil {
		return true // a year beyond int: leave it to the service
	}
	if neg {
		y = -y
	}
	m, _ := strconv.Atoi(s[i+1 : i+3])
	d, _ := strconv.Atoi(s[i+4 : i+6])
	return d <= time.Date(y, time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// Collapse applies XSD whitespace collapsing, which every primitive but
// string does to its text.
func (t *Type) Collapse(s string) string {
	if t.Builtin == String || t.Builtin == AnyType {
		return s
	}
	return strings.Join(strings.Fields(s), " ")
}

func (t *Type) describe() string {
	if t.Name.Local != "" {
		return t.Name.Local
	}
	return t.Builtin.String()
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}
