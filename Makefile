# Sluice — build, run and test. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO        ?= go
BIN       := bin/sluice
DATA_DIR  ?= .data
ADDR      ?= 127.0.0.1:8080

ORT_VERSION := 1.30.0
ORT_SHA256  := ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23
ORT_DIR     := .cache/onnxruntime/$(ORT_VERSION)
ORT_LIB     := $(ORT_DIR)/libonnxruntime.so
export SLUICE_ONNXRUNTIME_LIB := $(abspath $(ORT_LIB))

KUBE_VERSION := v1.37.2
KWOK_VERSION := v0.8.0
KUBE_BIN     := .cache/kube/$(KUBE_VERSION)/bin
export SLUICE_KUBE_BIN := $(abspath $(KUBE_BIN))

GRPCURL_VERSION := v1.9.4
GRPCURL := .cache/grpcurl/$(GRPCURL_VERSION)/grpcurl
export SLUICE_GRPCURL := $(abspath $(GRPCURL))

CLOUDEVENTS_JS_VERSION := 10.0.0
CLOUDEVENTS_JS := .cache/cloudevents-js/$(CLOUDEVENTS_JS_VERSION)
export SLUICE_CLOUDEVENTS_JS := $(abspath $(CLOUDEVENTS_JS))/node_modules/cloudevents

IMAGE := sluice:latest
export CONTAINERS_CONF := $(abspath deploy/podman/containers.conf)
export SLUICE_IMAGE := $(IMAGE)

ONNX_TESTDATA := /usr/share/libonnx-testdata/data
export SLUICE_ONNX_TESTDATA := $(ONNX_TESTDATA)

DEMO_CSV   := deploy/demo/iris.csv
DEMO_MODEL := deploy/demo/iris.onnx
DEMO_SPEC  := deploy/demo/iris.yaml

GO_SOURCES := $(shell find . -name '*.go' -not -path './.cache/*') go.mod go.sum

.PHONY: help deps kube-bins kube-node grpcurl containers image build run test conformance e2e-kube e2e-faults bench vet clean

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

deps: $(ORT_LIB) $(CLOUDEVENTS_JS)/node_modules/cloudevents ## install what the tests and the worker need (ONNX Runtime, Go modules, the CloudEvents JavaScript SDK a test drives)
	@$(GO) mod download

$(CLOUDEVENTS_JS)/node_modules/cloudevents:
	@npm install --silent --no-audit --no-fund --prefix $(CLOUDEVENTS_JS) cloudevents@$(CLOUDEVENTS_JS_VERSION) >/dev/null

$(ORT_LIB):
	@ORT_VERSION=$(ORT_VERSION) ORT_SHA256=$(ORT_SHA256) ORT_DIR=$(ORT_DIR) deploy/scripts/install-onnxruntime.sh

kube-bins: $(KUBE_BIN)/VERSION ## build the Kubernetes control plane, kwok, and a node's kubelet, kube-proxy, CoreDNS (cold: ~18 min)

$(KUBE_BIN)/VERSION: e2e/kubebin/go.mod e2e/kubebin/etcd/go.mod e2e/kubebin/coredns/go.mod e2e/kubebin/build.sh
	@KUBE_BIN=$(abspath $(KUBE_BIN)) KUBE_VERSION=$(KUBE_VERSION) KWOK_VERSION=$(KWOK_VERSION) e2e/kubebin/build.sh

grpcurl: $(GRPCURL) ## build grpcurl, which the gRPC tests call as a user would

$(GRPCURL):
	GOBIN=$(abspath $(dir $(GRPCURL))) $(GO) install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)

kube-node: ## install what a real test node runs beside the kubelet: containerd, runc, CNI plugins, iptables (Debian's packages)
	@deploy/scripts/install-node.sh

containers: ## install podman, runc and debootstrap (Debian's packages) and make the base image
	@deploy/scripts/install-containers.sh

image: containers deps $(BIN) ## build the sluice image (sluice:latest) with podman, from the binary built here
	podman build --quiet --format docker --target prebuilt --build-arg BASE=localhost/debian:$$(. /etc/os-release && echo $$VERSION_CODENAME)-minbase-ca \
		-t $(IMAGE) -f deploy/Dockerfile . >/dev/null
	@echo "built $(IMAGE)"

build: $(BIN) ## build bin/sluice

$(BIN): $(GO_SOURCES)
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/sluice

$(DEMO_MODEL): $(BIN) $(DEMO_CSV)
	$(BIN) train --input $(DEMO_CSV) --output $(DEMO_MODEL)

run: deps $(BIN) $(DEMO_MODEL) ## start the embedded platform with the iris demo on $(ADDR)
	$(BIN) up --data-dir $(DATA_DIR) --addr $(ADDR) --deploy $(DEMO_SPEC)

test: deps kube-bins grpcurl image ## run every test against the real nats-server, ONNX Runtime and Kubernetes control plane
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 10m ./...

conformance: deps $(ONNX_TESTDATA) ## deploy every ONNX backend test model Debian ships and check each answer
	$(GO) vet -tags conformance ./e2e/
	SLUICE_CONFORMANCE_REPORT=$(abspath conformance-report.txt) $(GO) test -tags conformance -count=1 -timeout 40m -run TestModelConformance -v ./e2e/ 2>&1 | grep -v 'level=INFO'; exit $${PIPESTATUS[0]}

e2e-kube: deps kube-bins kube-node image ## install Sluice with kubectl on a real control plane and kubelet node, and prove it end to end (root)
	$(GO) vet -tags e2ekube ./e2e/
	$(GO) test -tags e2ekube -count=1 -timeout 20m -run TestSluiceOnKubernetes -v ./e2e/ 2>&1 | grep -v 'level=INFO'; exit $${PIPESTATUS[0]}

$(ONNX_TESTDATA):
	@ONNX_TESTDATA=$(ONNX_TESTDATA) deploy/scripts/install-onnx-testdata.sh

SOAK ?= 10m
FUZZTIME ?= 15s
# Go minimizes each new input that widens coverage for up to 60 s by default: a minimization still
# running when FUZZTIME ends fails the target with "context deadline exceeded" and no input to show.
FUZZ_TARGETS := activator:FuzzCloudEventIngress functions:FuzzParseFunction events/oip:FuzzDecodeInferenceRequest \
	events/oip:FuzzDecodeInferenceRequestBinary functions/onnxfile:FuzzReadSignature functions/batch:FuzzCSVReader functions/batch:FuzzJSONLFastPath
e2e-faults: deps kube-bins ## kill, pause and starve Sluice's processes under load (3-server NATS cluster, workers, activator; sluice up on a small disk) and count every request, then fuzz each parser of outside input for FUZZTIME; SOAK=10m (root)
	$(GO) vet -tags faults ./e2e/
	rm -f faults-report.txt
	SLUICE_SOAK=$(SOAK) SLUICE_FAULTS_REPORT=$(abspath faults-report.txt) $(GO) test -tags faults -count=1 -timeout 40m -run '^TestFaults' -v ./e2e/ 2>&1 | grep -v 'level=INFO'; exit $${PIPESTATUS[0]}
	@for target in $(FUZZ_TARGETS); do \
		echo "fuzz $${target#*:} ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${target#*:}$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./$${target%%:*}/ || exit 1; \
	done

bench: deps $(BIN) $(DEMO_MODEL) ## ONNX Runtime, platform and autoscaler benchmarks
	$(BIN) bench --model $(DEMO_MODEL) --spec $(DEMO_SPEC)
	$(GO) test -run '^$$' -bench 'DecisionLatency' -benchtime 1x ./e2e/
	$(GO) test -run '^$$' -bench 'Tick' -benchtime 20x ./autoscaler/
	SLUICE_BATCH_ROWS=1000000 $(GO) test -run '^$$' -bench 'BatchScoring' -benchtime 3x ./e2e/
	$(GO) test -run '^$$' -bench 'ClientText' -benchtime 3x ./functions/batch/
	$(GO) test -run '^$$' -bench 'LargeTensor' -benchtime 3x ./e2e/
	$(GO) test -run '^$$' -bench 'JSONImage' -benchtime 10x ./events/oip/
	$(GO) test -run '^$$' -bench 'SyncAlways' -benchtime 1x -v ./events/embedded/ | grep -E 'Benchmark|ratio'

vet: ## go vet
	$(GO) vet ./...

clean: ## remove build outputs (keeps the ONNX Runtime cache)
	rm -rf bin $(DATA_DIR) $(DEMO_MODEL)
