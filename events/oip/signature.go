package oip

import (
	"fmt"
	"slices"
	"strings"
)

// Check reports the first way req does not fit the model's signature: an
// unknown or missing input, a datatype or shape the model does not take, or an
// unknown requested output. Each error is a *FieldError naming the field.
func (s Signature) Check(req *InferenceRequest) error {
	seen := make([]bool, len(s.Inputs))
	for i, input := range req.Inputs {
		field := fmt.Sprintf("inputs[%d]", i)
		index := s.input(input.Name)
		if index < 0 {
			return &FieldError{Field: field + ".name", Problem: fmt.Sprintf("model has no input %q (it takes %s)", input.Name, specNames(s.Inputs))}
		}
		if seen[index] {
			return &FieldError{Field: field + ".name", Problem: fmt.Sprintf("input %q given twice", input.Name)}
		}
		seen[index] = true
		if err := s.Inputs[index].check(field, input); err != nil {
			return err
		}
	}
	for index, ok := range seen {
		if !ok {
			return &FieldError{Field: "inputs", Problem: fmt.Sprintf("model input %q is missing", s.Inputs[index].Name)}
		}
	}
	for i, output := range req.Outputs {
		if !slices.ContainsFunc(s.Outputs, func(spec TensorSpec) bool { return spec.Name == output.Name }) {
			return &FieldError{Field: fmt.Sprintf("outputs[%d].name", i), Problem: fmt.Sprintf("model has no output %q (it gives %s)", output.Name, specNames(s.Outputs))}
		}
	}
	return nil
}

func (spec TensorSpec) check(field string, t Tensor) error {
	if t.Datatype != spec.Datatype {
		return &FieldError{Field: field + ".datatype", Problem: fmt.Sprintf("model input %q takes %s, got %s", spec.Name, spec.Datatype, t.Datatype)}
	}
	fits := len(t.Shape) == len(spec.Shape)
	for d := 0; fits && d < len(spec.Shape); d++ {
		fits = spec.Shape[d] < 0 || spec.Shape[d] == t.Shape[d]
	}
	if !fits {
		return &FieldError{Field: field + ".shape", Problem: fmt.Sprintf("model input %q takes shape %s, got %s", spec.Name, FormatShape(spec.Shape), FormatShape(t.Shape))}
	}
	return nil
}

func (s Signature) input(name string) int {
	return slices.IndexFunc(s.Inputs, func(spec TensorSpec) bool { return spec.Name == name })
}

func specNames(specs []TensorSpec) string {
	names := make([]string, len(specs))
	for i, spec := range specs {
		names[i] = fmt.Sprintf("%q", spec.Name)
	}
	return strings.Join(names, ", ")
}

// FormatShape writes a shape as [-1,4], with -1 for a dimension of any size.
func FormatShape(shape []int64) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, ",") + "]"
}
