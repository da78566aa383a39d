package batch

import (
	"encoding/json"
	"strconv"
)

// parseFast reads the two common row forms without reflection: an array of
// numbers, and an object whose members are "id" (a string without escapes,
// or a number) and "features" (an array of numbers). It reports ok false for
// anything else, even valid JSON, which parse leaves to encoding/json: that
// way every row reads the same as through encoding/json, errors included.
// The features are valid until the next call.
func (j *jsonlReader) parseFast(text []byte) (features []float64, id json.RawMessage, ok bool) {
	s := scanner{text: text}
	s.space()
	switch s.peek() {
	case '[':
		features, ok = s.numbers(j.values[:0])
	case '{':
		s.i++
		hasFeatures := false
		for ok = true; ok; {
			s.space()
			var key []byte
			if key, ok = s.plainString(); !ok {
				break
			}
			s.space()
			if ok = s.next() == ':'; !ok {
				break
			}
			s.space()
			switch string(key) {
			case "features":
				features, ok = s.numbers(j.values[:0])
				hasFeatures = true
			case "id":
				start := s.i
				if s.peek() == '"' {
					_, ok = s.plainString()
				} else {
					ok = s.number()
				}
				id = text[start:s.i]
			default: // encoding/json matches keys without regard to case, and skips unknown ones
				ok = false
			}
			if !ok {
				break
			}
			s.space()
			if c := s.next(); c == '}' {
				break
			} else if c != ',' {
				ok = false
			}
		}
		ok = ok && hasFeatures
	}
	if !ok {
		return nil, nil, false
	}
	s.space()
	if s.i != len(text) {
		return nil, nil, false
	}
	j.values = features
	return features, id, true
}

// scanner walks one JSON text.
type scanner struct {
	text []byte
	i    int
}

func (s *scanner) peek() byte {
	if s.i < len(s.text) {
		return s.text[s.i]
	}
	return 0
}

func (s *scanner) next() byte {
	c := s.peek()
	s.i++
	return c
}

func (s *scanner) space() {
	for s.i < len(s.text) {
		switch s.text[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// plainString reads a string without escapes or control characters and
// returns what is between its quotes.
func (s *scanner) plainString() ([]byte, bool) {
	if s.next() != '"' {
		return nil, false
	}
	start := s.i
	for s.i < len(s.text) {
		switch c := s.text[s.i]; {
		case c == '"':
			s.i++
			return s.text[start : s.i-1], true
		case c == '\\' || c < 0x20:
			return nil, false
		}
		s.i++
	}
	return nil, false
}

// numbers reads an array of numbers, appending them to dst.
func (s *scanner) numbers(dst []float64) ([]float64, bool) {
	if s.next() != '[' {
		return nil, false
	}
	s.space()
	if s.peek() == ']' {
		s.i++
		return dst, true
	}
	for {
		s.space()
		start := s.i
		if !s.number() {
			return nil, false
		}
		value, err := strconv.ParseFloat(string(s.text[start:s.i]), 64) // not kept: no copy
		if err != nil {
			return nil, false // out of range: encoding/json says so
		}
		dst = append(dst, value)
		s.space()
		switch s.next() {
		case ',':
		case ']':
			return dst, true
		default:
			return nil, false
		}
	}
}

// number reads a number as JSON writes it: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() bool {
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case c >= '1' && c <= '9':
		s.digits()
	default:
		return false
	}
	if s.peek() == '.' {
		s.i++
		if !s.digits() {
			return false
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !s.digits() {
			return false
		}
	}
	return true
}

// digits reads one or more digits.
func (s *scanner) digits() bool {
	start := s.i
	for s.i < len(s.text) && s.text[s.i] >= '0' && s.text[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}
