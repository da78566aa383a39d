package functions

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// unknownField says where data has a field a Function does not, as a path
// (spec.scalling) with the known field of that place it is likely a typo
// of; "" when it finds none.
func unknownField(data []byte) string {
	var doc any
	if yaml.Unmarshal(data, &doc) != nil {
		return ""
	}
	return unknownIn(doc, reflect.TypeFor[Function](), "")
}

var unmarshaler = reflect.TypeFor[json.Unmarshaler]()

func unknownIn(value any, t reflect.Type, path string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshaler) {
		return "" // it reads itself
	}
	switch value := value.(type) {
	case map[string]any:
		keys := slices.Sorted(maps.Keys(value))
		if t.Kind() == reflect.Map {
			for _, key := range keys {
				if found := unknownIn(value[key], t.Elem(), join(path, key)); found != "" {
					return found
				}
			}
			return ""
		}
		if t.Kind() != reflect.Struct {
			return ""
		}
		fields := jsonFields(t)
		for _, key := range keys {
			field, ok := fields[key]
			if !ok {
				return join(path, key) + ": unknown field" + suggest(key, fields)
			}
			if found := unknownIn(value[key], field, join(path, key)); found != "" {
				return found
			}
		}
	case []any:
		if t.Kind() == reflect.Slice {
			for i, element := range value {
				if found := unknownIn(element, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); found != "" {
					return found
				}
			}
		}
	}
	return ""
}

// jsonFields maps the JSON names of struct t's fields, those of embedded
// structs included, to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for field := range t.Fields() {
		name, _, _ := strings.Cut(field.Tag.Get("json"), ",")
		switch {
		case name == "-" || !field.IsExported():
		case field.Anonymous && name == "":
			embedded := field.Type
			if embedded.Kind() == reflect.Pointer {
				embedded = embedded.Elem()
			}
			for key, value := range jsonFields(embedded) {
				fields[key] = value
			}
		case name == "":
			fields[field.Name] = field.Type
		default:
			fields[name] = field.Type
		}
	}
	return fields
}

// suggest names the field of fields that key is one or two edits from.
func suggest(key string, fields map[string]reflect.Type) string {
	best, distance := "", 3
	for name := range fields {
		if d := editDistance(strings.ToLower(key), strings.ToLower(name)); d < distance || d == distance && name < best {
			best, distance = name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	previous := make([]int, len(b)+1)
	for j := range previous {
		previous[j] = j
	}
	for i := 1; i <= len(a); i++ {
		current := make([]int, len(b)+1)
		current[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			current[j] = min(previous[j]+1, current[j-1]+1, previous[j-1]+cost)
		}
		previous = current
	}
	return previous[len(b)]
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
