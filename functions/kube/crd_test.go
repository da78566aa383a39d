package kube_test

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/e2e/kubetest"
	"sluice.dev/sluice/functions"
)

const crdFile = "../../deploy/crd/functions.sluice.dev.yaml"

// goodFunction is the demo function as a Kubernetes user writes it: its
// model and data are objects of the model store.
const goodFunction = `apiVersion: sluice.dev/v1alpha1
kind: Function
metadata: {name: iris}
spec:
  model: {uri: iris/738134b79266.onnx}
  retrain: {data: {uri: iris/data/iris.csv}, label: species, drift: {}}
  rollout: {maxLatencyP99: 250ms}
`

// startWithCRD runs a control plane with the Function CRD established.
func startWithCRD(t *testing.T) (*kubetest.Cluster, string) {
	t.Helper()
	cluster := kubetest.Start(t)
	cluster.InstallCRDs(t, crdFile)
	return cluster, cluster.NewNamespace(t)
}

// TestFunctionResourceChecksAtAdmission: the API server itself, with no
// webhook, fills the defaults sluice deploy fills and refuses a bad Function
// with the path of the bad field.
func TestFunctionResourceChecksAtAdmission(t *testing.T) {
	cluster, namespace := startWithCRD(t)
	apply := func(manifest string) (string, error) {
		return cluster.Kubectl(t, manifest, "apply", "--namespace", namespace, "-f", "-")
	}
	out, err := apply(goodFunction)
	require.NoError(t, err, out)
	out, err = cluster.Kubectl(t, "", "get", "--namespace", namespace, "function", "iris", "-o", "json")
	require.NoError(t, err, out)
	var stored struct {
		Spec functions.Spec `json:"spec"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &stored))
	want, err := functions.Parse([]byte(goodFunction))
	require.NoError(t, err)
	require.Equal(t, want.Spec, stored.Spec, "the API server's defaults are sluice deploy's")

	out, err = cluster.Kubectl(t, "", "get", "--namespace", namespace, "functions")
	require.NoError(t, err, out)
	require.Regexp(t, `^NAME\s+READY\s+REPLICAS\s+DEPTH\s+VERSION\s+WEIGHTS\s+AGE\n`, out)

	bad := []struct{ name, spec, want string }{
		{"unknown field", "model: {uri: a}\n  scalling: {}", `unknown field "spec.scalling"`},
		{"bad device", "model: {uri: a}\n  runtime: {device: tpu}", `spec.runtime.device: Unsupported value: "tpu"`},
		{"negative replicas", "model: {uri: a}\n  scaling: {minReplicas: -1}", "spec.scaling.minReplicas: Invalid value: -1"},
		{"max below min", "model: {uri: a}\n  scaling: {minReplicas: 5, maxReplicas: 2}", "spec.scaling.maxReplicas: Invalid value: must be at least minReplicas"},
		{"weights not 100", "model: {uri: a}\n  traffic: [{revision: '1', weight: 60}, {revision: '2', weight: 30}]", "spec.traffic: Invalid value: the weights must sum to 100"},
		{"a local path", "model: {path: ./iris.onnx}", "spec.model: Invalid value: set uri"},
		{"an URL without sha256", "model: {uri: 'https://models.example/iris.onnx'}", "spec.model.sha256: Invalid value: an http(s) uri needs sha256"},
		{"data by URL without sha256", "model: {uri: a}\n  retrain: {data: {uri: 'https://data.example/iris.csv'}}", "spec.retrain.data.sha256: Invalid value: an http(s) uri needs sha256"},
		{"a bad duration", "model: {uri: a}\n  timeouts: {request: 2h}", "spec.timeouts.request: Invalid value: \"2h\": must be between 1ms and 1h"},
		{"steps falling", "model: {uri: a}\n  rollout: {steps: [50, 10, 100]}", "spec.rollout.steps: Invalid value: must rise"},
		{"bad name", "model: {uri: a}", "metadata.name must be a DNS label"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			name := "bad"
			if c.name == "bad name" {
				name = "Bad_Name"
			}
			out, err := apply(fmt.Sprintf("apiVersion: sluice.dev/v1alpha1\nkind: Function\nmetadata: {name: %s}\nspec:\n  %s\n", name, c.spec))
			require.Error(t, err, out)
			require.Contains(t, out, c.want)
		})
	}

	t.Run("an immutable field changed", func(t *testing.T) {
		pinned := "apiVersion: sluice.dev/v1alpha1\nkind: Function\nmetadata: {name: pinned}\nspec:\n  model: {uri: 'https://models.example/iris.onnx', sha256: %s}\n"
		out, err := apply(fmt.Sprintf(pinned, strings.Repeat("a", 64)))
		require.NoError(t, err, out)
		out, err = apply(fmt.Sprintf(pinned, strings.Repeat("b", 64)))
		require.Error(t, err, out)
		require.Contains(t, out, "spec.model.sha256: Invalid value: is immutable while uri stays the same")
	})
}

// TestCRDSchemaIsTheGoSpec: every field of functions.Spec is in the CRD's
// schema with the same name and kind, and the schema has no other, so a
// field added to one and not the other fails here.
func TestCRDSchemaIsTheGoSpec(t *testing.T) {
	data, err := os.ReadFile(crdFile)
	require.NoError(t, err)
	var crd struct {
		Spec struct {
			Versions []struct {
				Schema struct {
					OpenAPIV3Schema schema `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	require.NoError(t, yaml.Unmarshal(data, &crd))
	fromSchema := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].paths("spec")
	fromGo := goPaths("spec", reflect.TypeFor[functions.Spec]())
	require.Equal(t, fromGo, fromSchema)
}

// schema is the part of an OpenAPI schema the comparison reads.
type schema struct {
	Type       string            `json:"type"`
	Properties map[string]schema `json:"properties"`
	Items      *schema           `json:"items"`
	Extra      map[string]any    `json:"-"`
}

func (s *schema) UnmarshalJSON(data []byte) error {
	type plain struct {
		Type       string            `json:"type"`
		Properties map[string]schema `json:"properties"`
		Items      *schema           `json:"items"`
	}
	var p plain
	if err := json.Unmarshal(data, &p); err != nil {
		return err
	}
	s.Type, s.Properties, s.Items = p.Type, p.Properties, p.Items
	return nil
}

// paths lists "path: type" for s and everything under it, sorted.
func (s schema) paths(path string) []string {
	out := []string{path + ": " + s.Type}
	for name, property := range s.Properties {
		out = append(out, property.paths(path+"."+name)...)
	}
	if s.Items != nil {
		out = append(out, s.Items.paths(path+"[]")...)
	}
	slices.Sort(out)
	return out
}

// goPaths lists "path: type" for a Go type as its JSON looks, sorted.
func goPaths(path string, typ reflect.Type) []string {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	var out []string
	switch {
	case typ == reflect.TypeFor[functions.Duration]() || typ.Kind() == reflect.String:
		out = append(out, path+": string")
	case typ.Kind() == reflect.Bool:
		out = append(out, path+": boolean")
	case typ.Kind() == reflect.Int || typ.Kind() == reflect.Int64:
		out = append(out, path+": integer")
	case typ.Kind() == reflect.Float64:
		out = append(out, path+": number")
	case typ.Kind() == reflect.Slice:
		out = append(out, path+": array")
		out = append(out, goPaths(path+"[]", typ.Elem())...)
	case typ.Kind() == reflect.Struct:
		out = append(out, path+": object")
		for field := range typ.Fields() {
			name, _, _ := strings.Cut(field.Tag.Get("json"), ",")
			out = append(out, goPaths(path+"."+name, field.Type)...)
		}
	default:
		out = append(out, path+": "+typ.Kind().String())
	}
	slices.Sort(out)
	return out
}
