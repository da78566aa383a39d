package train

import (
	"math"
	"math/rand/v2"
)

// dense is a fully connected layer, outputs = weights · inputs + bias, with
// weights stored row-major as [outputs][inputs]: the layout of the B input
// of an ONNX Gemm with transB=1.
type dense struct {
	inputs  int
	outputs int
	weights []float64
	bias    []float64
}

// network is a stack of dense layers with a ReLU after every layer but the
// last, whose outputs are the logits.
type network struct {
	layers []dense
}

// newNetwork makes a network from features to classes through one hidden
// layer of the given width, or directly when hidden is 0. Hidden weights
// start He-normal from random; the output layer of logistic regression
// starts at zero, where its convex loss has no bad start.
func newNetwork(features, hidden, classes int, random *rand.Rand) network {
	if hidden == 0 {
		return network{layers: []dense{newDense(features, classes, 0, random)}}
	}
	return network{layers: []dense{
		newDense(features, hidden, math.Sqrt(2/float64(features)), random),
		newDense(hidden, classes, math.Sqrt(1/float64(hidden)), random),
	}}
}

// newDense makes a layer with normal weights of the given deviation and
// zero bias.
func newDense(inputs, outputs int, deviation float64, random *rand.Rand) dense {
	layer := dense{inputs: inputs, outputs: outputs, weights: make([]float64, inputs*outputs), bias: make([]float64, outputs)}
	if deviation > 0 {
		for index := range layer.weights {
			layer.weights[index] = random.NormFloat64() * deviation
		}
	}
	return layer
}

// zeroLike returns a network of the same shape with all parameters zero.
func (net network) zeroLike() network {
	zero := network{layers: make([]dense, len(net.layers))}
	for index, layer := range net.layers {
		zero.layers[index] = newDense(layer.inputs, layer.outputs, 0, nil)
	}
	return zero
}

// parameters lists the network's parameter slices, weights then bias of
// each layer, for the optimizer.
func (net network) parameters() [][]float64 {
	var parameters [][]float64
	for _, layer := range net.layers {
		parameters = append(parameters, layer.weights, layer.bias)
	}
	return parameters
}

// forward runs a batch of rows (row-major, rows × first layer inputs) and
// returns the activations of every layer: activations[0] is the batch
// itself, hidden activations are after ReLU, and the last are logits.
func (net network) forward(batch []float64, rows int) [][]float64 {
	activations := [][]float64{batch}
	for index, layer := range net.layers {
		inputs := activations[index]
		outputs := make([]float64, rows*layer.outputs)
		for row := range rows {
			in := inputs[row*layer.inputs : (row+1)*layer.inputs]
			out := outputs[row*layer.outputs : (row+1)*layer.outputs]
			for unit := range layer.outputs {
				sum := layer.bias[unit]
				for feature, weight := range layer.weights[unit*layer.inputs : (unit+1)*layer.inputs] {
					sum += weight * in[feature]
				}
				if index < len(net.layers)-1 {
					sum = max(sum, 0)
				}
				out[unit] = sum
			}
		}
		activations = append(activations, outputs)
	}
	return activations
}

// backward writes into gradients the gradient of the mean softmax
// cross-entropy of the labels plus the L2 term, given the activations of
// forward, and returns the mean cross-entropy without the L2 term.
func (net network) backward(activations [][]float64, labels []int, l2 float64, gradients network) float64 {
	rows := len(labels)
	classes := net.layers[len(net.layers)-1].outputs
	delta := make([]float64, rows*classes)
	loss := 0.0
	for row, label := range labels {
		probabilities := delta[row*classes : (row+1)*classes]
		softmax(activations[len(activations)-1][row*classes:(row+1)*classes], probabilities)
		loss -= math.Log(max(probabilities[label], math.SmallestNonzeroFloat64))
		probabilities[label]--
		for class := range probabilities {
			probabilities[class] /= float64(rows)
		}
	}
	for index := len(net.layers) - 1; index >= 0; index-- {
		layer, gradient := net.layers[index], gradients.layers[index]
		inputs := activations[index]
		for weight, value := range layer.weights {
			gradient.weights[weight] = l2 * value
		}
		clear(gradient.bias)
		for row := range rows {
			in := inputs[row*layer.inputs : (row+1)*layer.inputs]
			for unit, change := range delta[row*layer.outputs : (row+1)*layer.outputs] {
				gradient.bias[unit] += change
				weights := gradient.weights[unit*layer.inputs : (unit+1)*layer.inputs]
				for feature, value := range in {
					weights[feature] += change * value
				}
			}
		}
		if index > 0 {
			delta = layer.propagate(delta, inputs, rows)
		}
	}
	return loss / float64(rows)
}

// propagate returns the gradient with respect to the layer's inputs, which
// are ReLU outputs: where an input is 0 the ReLU was off and passes none.
func (layer dense) propagate(delta, inputs []float64, rows int) []float64 {
	previous := make([]float64, rows*layer.inputs)
	for row := range rows {
		in := inputs[row*layer.inputs : (row+1)*layer.inputs]
		out := previous[row*layer.inputs : (row+1)*layer.inputs]
		for unit, change := range delta[row*layer.outputs : (row+1)*layer.outputs] {
			for feature, weight := range layer.weights[unit*layer.inputs : (unit+1)*layer.inputs] {
				out[feature] += change * weight
			}
		}
		for feature, value := range in {
			if value <= 0 {
				out[feature] = 0
			}
		}
	}
	return previous
}

// softmax writes the softmax of logits into probabilities, shifting by the
// largest logit so that no exponent overflows.
func softmax(logits, probabilities []float64) {
	largest := math.Inf(-1)
	for _, logit := range logits {
		largest = max(largest, logit)
	}
	sum := 0.0
	for class, logit := range logits {
		probabilities[class] = math.Exp(logit - largest)
		sum += probabilities[class]
	}
	for class := range probabilities {
		probabilities[class] /= sum
	}
}

// adam is the Adam optimizer (Kingma and Ba, 2015) over a fixed list of
// parameter slices.
type adam struct {
	rate   float64
	step   int
	first  [][]float64 // moving average of gradients
	second [][]float64 // moving average of squared gradients
}

// Adam's constants, as the paper recommends.
const (
	adamBeta1   = 0.9
	adamBeta2   = 0.999
	adamEpsilon = 1e-8
)

// newAdam prepares moment estimates shaped like parameters.
func newAdam(rate float64, parameters [][]float64) *adam {
	optimizer := &adam{rate: rate}
	for _, parameter := range parameters {
		optimizer.first = append(optimizer.first, make([]float64, len(parameter)))
		optimizer.second = append(optimizer.second, make([]float64, len(parameter)))
	}
	return optimizer
}

// update takes one step of parameters against gradients, which must be
// shaped as the parameters given to newAdam.
func (optimizer *adam) update(parameters, gradients [][]float64) {
	optimizer.step++
	correction1 := 1 - math.Pow(adamBeta1, float64(optimizer.step))
	correction2 := 1 - math.Pow(adamBeta2, float64(optimizer.step))
	for index, parameter := range parameters {
		first, second := optimizer.first[index], optimizer.second[index]
		for position, gradient := range gradients[index] {
			first[position] = adamBeta1*first[position] + (1-adamBeta1)*gradient
			second[position] = adamBeta2*second[position] + (1-adamBeta2)*gradient*gradient
			step := (first[position] / correction1) / (math.Sqrt(second[position]/correction2) + adamEpsilon)
			parameter[position] -= optimizer.rate * step
		}
	}
}
