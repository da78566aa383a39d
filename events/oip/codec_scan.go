package oip

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// maxNesting bounds how deeply arrays and objects may nest in a body, so a
// body of brackets cannot exhaust the stack.
const maxNesting = 512

// scanner reads JSON tokens from a body held in memory. pos is the offset of
// the next unread byte; errors about malformed JSON name it.
type scanner struct {
	buf []byte
	pos int
}

// fieldPath names a place in a body without building a string until an error
// needs one: {"inputs", 0, "shape"} is inputs[0].shape, {"id", -1, ""} is id.
type fieldPath struct {
	list   string
	index  int
	member string
}

func (f fieldPath) String() string {
	field := f.list
	if f.index >= 0 {
		field += "[" + strconv.Itoa(f.index) + "]"
	}
	if f.member == "" {
		return field
	}
	return member(field, f.member)
}

// with returns the path of member name of the element f names.
func (f fieldPath) with(name string) fieldPath {
	f.member = name
	return f
}

var bodyPath = fieldPath{list: "body", index: -1}

// syntaxError reports malformed JSON at the current offset.
func (s *scanner) syntaxError(problem string) *FieldError {
	return &FieldError{Field: "body", Problem: fmt.Sprintf("invalid JSON at offset %d: %s", s.pos, problem)}
}

// unexpected reports that the byte at pos is not what want describes.
func (s *scanner) unexpected(want string) *FieldError {
	if s.pos >= len(s.buf) {
		return s.syntaxError("unexpected end of body, " + want)
	}
	return s.syntaxError(fmt.Sprintf("unexpected %q, %s", s.buf[s.pos], want))
}

// typeError reports that the value at pos is valid JSON of the wrong type for
// field, or is not JSON at all.
func (s *scanner) typeError(field fieldPath, want string) *FieldError {
	got := valueType(s.peek())
	if got == "" {
		return s.unexpected("want a value")
	}
	return &FieldError{Field: field.String(), Problem: "want " + want + ", got " + got}
}

// valueType names the JSON type of a value starting with c, or "" when no
// value starts with c.
func valueType(c byte) string {
	switch {
	case c == '{':
		return "object"
	case c == '[':
		return "array"
	case c == '"':
		return "string"
	case c == 't' || c == 'f':
		return "boolean"
	case c == 'n':
		return "null"
	case c == '-' || (c >= '0' && c <= '9'):
		return "number"
	}
	return ""
}

// peek skips whitespace and returns the next byte, or 0 at the end.
func (s *scanner) peek() byte {
	for s.pos < len(s.buf) {
		switch c := s.buf[s.pos]; c {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return c
		}
	}
	return 0
}

// end checks that nothing but whitespace follows the value just read.
func (s *scanner) end() error {
	if s.peek() != 0 || s.pos < len(s.buf) {
		return s.syntaxError("data after the end of the JSON value")
	}
	return nil
}

// next consumes separator c (',' or ':') or the closing bracket c.
func (s *scanner) next(c byte, want string) error {
	if s.peek() != c {
		return s.unexpected(want)
	}
	s.pos++
	return nil
}

// object reads the object at pos, calling member with each key and pos at
// its value; member must consume the value.
func (s *scanner) object(member func(key []byte) error) error {
	s.pos++ // the caller has seen '{'
	if s.peek() == '}' {
		s.pos++
		return nil
	}
	for {
		key, err := s.key()
		if err != nil {
			return err
		}
		if err := s.next(':', "want ':' after an object key"); err != nil {
			return err
		}
		s.peek()
		if err := member(key); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return s.unexpected("want ',' or '}' after an object member")
		}
	}
}

// array reads the array at pos, calling element with each index and pos at
// the element; element must consume it.
func (s *scanner) array(element func(i int) error) error {
	s.pos++ // the caller has seen '['
	if s.peek() == ']' {
		s.pos++
		return nil
	}
	for i := 0; ; i++ {
		s.peek()
		if err := element(i); err != nil {
			return err
		}
		if more, err := s.arrayNext(); !more {
			return err
		}
	}
}

// arrayNext consumes the ',' or ']' after an array element and reports
// whether another element follows.
func (s *scanner) arrayNext() (more bool, err error) {
	switch s.peek() {
	case ',':
		s.pos++
		return true, nil
	case ']':
		s.pos++
		return false, nil
	}
	return false, s.unexpected("want ',' or ']' after an array element")
}

// key reads an object key, decoding escapes only when it has some.
func (s *scanner) key() ([]byte, error) {
	if s.peek() != '"' {
		return nil, s.unexpected("want a string key")
	}
	start := s.pos
	raw, escaped, err := s.scanString()
	if err != nil || !escaped {
		return raw, err
	}
	decoded, err := s.unescape(start)
	return []byte(decoded), err
}

// stringValue reads the string at pos for field.
func (s *scanner) stringValue(field fieldPath) (string, error) {
	if s.peek() != '"' {
		return "", s.typeError(field, "a string")
	}
	start := s.pos
	raw, escaped, err := s.scanString()
	if err != nil {
		return "", err
	}
	if !escaped && utf8.Valid(raw) {
		return string(raw), nil
	}
	return s.unescape(start)
}

// unescape decodes the string token from start to pos, which scanString has
// checked, the way encoding/json does: invalid UTF-8 becomes U+FFFD.
func (s *scanner) unescape(start int) (string, error) {
	var decoded string
	if err := json.Unmarshal(s.buf[start:s.pos], &decoded); err != nil {
		s.pos = start
		return "", s.syntaxError(err.Error())
	}
	return decoded, nil
}

// scanString reads the string token at pos and returns what lies between its
// quotes, and whether that has escapes.
func (s *scanner) scanString() (raw []byte, escaped bool, err error) {
	start := s.pos + 1
	for i := start; i < len(s.buf); {
		switch c := s.buf[i]; {
		case c == '"':
			s.pos = i + 1
			return s.buf[start:i], escaped, nil
		case c == '\\':
			n := escapeLength(s.buf[i:])
			if n == 0 {
				s.pos = i
				return nil, false, s.syntaxError("invalid escape in string")
			}
			escaped = true
			i += n
		case c < 0x20:
			s.pos = i
			return nil, false, s.syntaxError("control character in string")
		default:
			i++
		}
	}
	s.pos = len(s.buf)
	return nil, false, s.syntaxError("unterminated string")
}

// escapeLength returns the length of the escape sequence b starts with, or 0
// when it is not a valid JSON escape.
func escapeLength(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	switch b[1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2
	case 'u':
		if len(b) < 6 {
			return 0
		}
		for _, c := range b[2:6] {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return 0
			}
		}
		return 6
	}
	return 0
}

// scanNumber reads the number token at pos and reports whether it is an
// integer: no fraction and no exponent.
func (s *scanner) scanNumber() (token []byte, integer bool, err error) {
	b, start := s.buf, s.pos
	i := start
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = skipDigits(b, i)
	default:
		s.pos = i
		return nil, false, s.unexpected("want a digit")
	}
	integer = true
	if i < len(b) && b[i] == '.' {
		integer = false
		if i = skipDigits(b, i+1); b[i-1] == '.' {
			s.pos = i
			return nil, false, s.unexpected("want a digit after '.'")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		integer = false
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if j := skipDigits(b, i); j > i {
			i = j
		} else {
			s.pos = i
			return nil, false, s.unexpected("want a digit in the exponent")
		}
	}
	s.pos = i
	return b[start:i], integer, nil
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// literal consumes word (true, false or null) at pos.
func (s *scanner) literal(word string) error {
	if len(s.buf)-s.pos < len(word) || string(s.buf[s.pos:s.pos+len(word)]) != word {
		return s.unexpected("want " + word)
	}
	s.pos += len(word)
	return nil
}

// skipValue reads and checks the value at pos, keeping nothing.
func (s *scanner) skipValue() error {
	return s.skip(0)
}

func (s *scanner) skip(depth int) error {
	if depth > maxNesting {
		return s.syntaxError(fmt.Sprintf("nested more than %d deep", maxNesting))
	}
	switch c := s.peek(); {
	case c == '{':
		return s.object(func([]byte) error { return s.skip(depth + 1) })
	case c == '[':
		return s.array(func(int) error { return s.skip(depth + 1) })
	case c == '"':
		_, _, err := s.scanString()
		return err
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		_, _, err := s.scanNumber()
		return err
	}
	return s.unexpected("want a value")
}
