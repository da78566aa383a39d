package train

import (
	"encoding/json"
	"fmt"
	"slices"

	"sluice.dev/sluice/events/oip"
	"sluice.dev/sluice/functions/onnxfile"
)

// Names of the exported model's inputs, outputs and metadata keys.
const (
	InputName         = "input"
	ProbabilitiesName = "probabilities"
	LabelName         = "label"
	// ClassName is the output holding each row's class name, the label
	// looked up in the class names.
	ClassName = "class"
	// MetadataClasses is the metadata key of the class names, a JSON array
	// indexed by the label output.
	MetadataClasses = "classes"
	// MetadataFeatures is the metadata key of the feature names, a JSON
	// array in the order of the input's columns.
	MetadataFeatures = "features"
	// ProducerName is the producer_name of the exported model.
	ProducerName = "sluice-train"
)

// mlOpsetVersion is the version of the ai.onnx.ml operator set the
// exported model imports for LabelEncoder.
const mlOpsetVersion = 2

// Classifier is a trained model: the standardization of the training
// features and the network behind it. It is immutable and safe for
// concurrent use.
type Classifier struct {
	featureNames []string
	classes      []string
	mean         []float64
	scale        []float64
	net          network
}

// Classes returns the class names, indexed by the label the model gives.
func (classifier *Classifier) Classes() []string { return slices.Clone(classifier.classes) }

// Features returns the feature names, in the order PredictProba and the
// ONNX model take them.
func (classifier *Classifier) Features() []string { return slices.Clone(classifier.featureNames) }

// PredictProba returns the probability of each class for one row of
// features, in the order of Features. It returns nil when the row does not
// have one value per feature.
func (classifier *Classifier) PredictProba(features []float32) []float32 {
	if len(features) != len(classifier.featureNames) {
		return nil
	}
	row := make([]float64, len(features))
	for column, value := range features {
		row[column] = (float64(value) - classifier.mean[column]) / classifier.scale[column]
	}
	activations := classifier.net.forward(row, 1)
	logits := activations[len(activations)-1]
	probabilities := make([]float64, len(logits))
	softmax(logits, probabilities)
	out := make([]float32, len(probabilities))
	for class, probability := range probabilities {
		out[class] = float32(probability)
	}
	return out
}

// ONNX exports the classifier as an ONNX model (IR 8, opset 13 and
// ai.onnx.ml opset 2) that computes what PredictProba does, in float32,
// for a batch, and names the most probable class:
//
//	input         FP32  [N, features]
//	centered      = Sub(input, feature_mean)
//	standardized  = Div(centered, feature_scale)
//	hidden_linear = Gemm(standardized, hidden_weights, hidden_bias, transB=1)   only with a hidden layer
//	hidden        = Relu(hidden_linear)                                          only with a hidden layer
//	logits        = Gemm(hidden or standardized, output_weights, output_bias, transB=1)
//	probabilities = Softmax(logits, axis=1)             FP32  [N, classes]
//	label         = ArgMax(logits, axis=1, keepdims=0)  INT64 [N]
//	class         = LabelEncoder(label)                 BYTES [N]   ai.onnx.ml domain: keys_int64s=0..classes-1,
//	                                                                values_strings=class names, default_string=""
//
// The outputs are probabilities, label and class, in this order.
// Standardization stays explicit in the graph rather than folded into the
// first weights, so the model reads as it was trained. The metadata holds
// the class and feature names as JSON arrays under MetadataClasses and
// MetadataFeatures.
func (classifier *Classifier) ONNX() ([]byte, error) {
	classes, err := json.Marshal(classifier.classes)
	if err != nil {
		return nil, fmt.Errorf("export onnx: %w", err)
	}
	features, err := json.Marshal(classifier.featureNames)
	if err != nil {
		return nil, fmt.Errorf("export onnx: %w", err)
	}
	model := onnxfile.Model{
		IRVersion:    onnxfile.DefaultIRVersion,
		OpsetVersion: onnxfile.DefaultOpsetVersion,
		ExtraOpsets:  []onnxfile.Opset{{Domain: onnxfile.MLDomain, Version: mlOpsetVersion}},
		ProducerName: ProducerName,
		Metadata:     map[string]string{MetadataClasses: string(classes), MetadataFeatures: string(features)},
		Graph:        classifier.graph(),
	}
	encoded, err := model.Marshal()
	if err != nil {
		return nil, fmt.Errorf("export onnx: %w", err)
	}
	return encoded, nil
}

// graph builds the graph that ONNX documents.
func (classifier *Classifier) graph() onnxfile.Graph {
	width := int64(len(classifier.featureNames))
	graph := onnxfile.Graph{
		Name: "classifier",
		Nodes: []onnxfile.Node{
			{OpType: "Sub", Name: "center", Inputs: []string{InputName, "feature_mean"}, Outputs: []string{"centered"}},
			{OpType: "Div", Name: "scale", Inputs: []string{"centered", "feature_scale"}, Outputs: []string{"standardized"}},
		},
		Initializers: []onnxfile.Initializer{
			{Name: "feature_mean", Dims: []int64{width}, Values: toFloat32(classifier.mean)},
			{Name: "feature_scale", Dims: []int64{width}, Values: toFloat32(classifier.scale)},
		},
		Inputs: []onnxfile.ValueInfo{{Name: InputName, Datatype: oip.FP32, Shape: []int64{-1, width}}},
		Outputs: []onnxfile.ValueInfo{
			{Name: ProbabilitiesName, Datatype: oip.FP32, Shape: []int64{-1, int64(len(classifier.classes))}},
			{Name: LabelName, Datatype: oip.Int64, Shape: []int64{-1}},
			{Name: ClassName, Datatype: oip.Bytes, Shape: []int64{-1}},
		},
	}
	previous := "standardized"
	for index, layer := range classifier.net.layers {
		prefix, output := "output", "logits"
		if index < len(classifier.net.layers)-1 {
			prefix, output = "hidden", "hidden_linear"
		}
		graph.Nodes = append(graph.Nodes, onnxfile.Node{
			OpType:     "Gemm",
			Name:       prefix + "_dense",
			Inputs:     []string{previous, prefix + "_weights", prefix + "_bias"},
			Outputs:    []string{output},
			Attributes: []onnxfile.Attribute{onnxfile.IntAttribute("transB", 1)},
		})
		graph.Initializers = append(graph.Initializers,
			onnxfile.Initializer{Name: prefix + "_weights", Dims: []int64{int64(layer.outputs), int64(layer.inputs)}, Values: toFloat32(layer.weights)},
			onnxfile.Initializer{Name: prefix + "_bias", Dims: []int64{int64(layer.outputs)}, Values: toFloat32(layer.bias)})
		previous = output
		if index < len(classifier.net.layers)-1 {
			graph.Nodes = append(graph.Nodes, onnxfile.Node{OpType: "Relu", Name: prefix + "_relu", Inputs: []string{output}, Outputs: []string{prefix}})
			previous = prefix
		}
	}
	graph.Nodes = append(graph.Nodes,
		onnxfile.Node{
			OpType: "Softmax", Name: "softmax", Inputs: []string{"logits"}, Outputs: []string{ProbabilitiesName},
			Attributes: []onnxfile.Attribute{onnxfile.IntAttribute("axis", 1)},
		},
		onnxfile.Node{
			OpType: "ArgMax", Name: "argmax", Inputs: []string{"logits"}, Outputs: []string{LabelName},
			Attributes: []onnxfile.Attribute{onnxfile.IntAttribute("axis", 1), onnxfile.IntAttribute("keepdims", 0)},
		},
		classifier.classNode())
	return graph
}

// classNode is the LabelEncoder (ai.onnx.ml, version 2) that maps each
// label to its class name. A label is always a valid index, so the
// default string is never used.
func (classifier *Classifier) classNode() onnxfile.Node {
	keys := make([]int64, len(classifier.classes))
	for class := range keys {
		keys[class] = int64(class)
	}
	return onnxfile.Node{
		OpType: "LabelEncoder", Domain: onnxfile.MLDomain, Name: "class_names",
		Inputs: []string{LabelName}, Outputs: []string{ClassName},
		Attributes: []onnxfile.Attribute{
			onnxfile.IntsAttribute("keys_int64s", keys...),
			onnxfile.StringsAttribute("values_strings", classifier.classes...),
			onnxfile.StringAttribute("default_string", ""),
		},
	}
}

// toFloat32 converts parameters to the FP32 the model stores.
func toFloat32(values []float64) []float32 {
	out := make([]float32, len(values))
	for index, value := range values {
		out[index] = float32(value)
	}
	return out
}

// Predict returns the class name the classifier gives each row.
func (classifier *Classifier) Predict(rows [][]float32) []string {
	names := make([]string, len(rows))
	for i, row := range rows {
		if probabilities := classifier.PredictProba(row); probabilities != nil {
			names[i] = classifier.classes[argmax32(probabilities)]
		}
	}
	return names
}

// Accuracy is the share of labels that predicted matches.
func Accuracy(predicted, labels []string) float64 {
	if len(labels) == 0 {
		return 0
	}
	correct := 0
	for i, label := range labels {
		if i < len(predicted) && predicted[i] == label {
			correct++
		}
	}
	return float64(correct) / float64(len(labels))
}

func argmax32(values []float32) int {
	best := 0
	for i, value := range values {
		if value > values[best] {
			best = i
		}
	}
	return best
}
