# Herald's build, code generation, checks and tests.
# The upstream tools (kube-apiserver, etcd, kubectl, controller-gen,
# staticcheck) are built from the Go modules pinned in hack/tools and cached
# under $(TOOLS_CACHE), so only the first run compiles them.

SHELL        := /bin/bash
GO           ?= go
TOOLS_CACHE  ?= $(HOME)/.cache/herald/devtools/$(shell cat hack/tools/go.mod hack/tools/go.sum | sha256sum | cut -c1-12)
CONTROLLER_GEN := $(TOOLS_CACHE)/controller-gen
STATICCHECK    := $(TOOLS_CACHE)/staticcheck
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS      := -X github.com/herald-lb/herald/internal/cli.Version=$(VERSION)
LAB_LDFLAGS  := -X github.com/herald-lb/herald/internal/labcli.Version=$(VERSION)
FUZZTIME     ?= 15s
# The image: every timestamp in it is the commit's time, so two builds of
# one commit give one digest. Its tag is VERSION without a leading v (the
# chart's appVersion form).
REVISION          ?= $(shell git rev-parse HEAD 2>/dev/null)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)
REGISTRY          ?= ghcr.io/herald-lb
IMAGE_TAG         ?= $(patsubst v%,%,$(VERSION))
IMAGE_FLAGS        = -version $(VERSION) -revision '$(REVISION)' -source-date-epoch '$(SOURCE_DATE_EPOCH)'

.PHONY: all build image image-push release-dry-run release-files plugin generate verify-generated tools lint test test-short fuzz bench clean

all: build

## build: bin/herald (static, what Herald's image ships), bin/kubectl-herald (a
## symlink to it: the kubectl plugin) and bin/herald-lab (the lab, which runs
## bin/herald as Herald's image)
build:
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o bin/herald ./cmd/herald
	ln -sf herald bin/kubectl-herald
	$(GO) build -ldflags '$(LAB_LDFLAGS)' -o bin/herald-lab ./cmd/herald-lab

## image: Herald's image (linux/amd64 + linux/arm64, static herald at /herald)
## as an OCI layout in bin/image and an OCI archive bin/herald-image.tar
image:
	$(GO) run ./hack/image $(IMAGE_FLAGS) -tag $(IMAGE_TAG) -layout bin/image -tarball bin/herald-image.tar

## image-push: build the image and push it to $(REGISTRY)/herald:$(IMAGE_TAG)
## (credentials from the Docker config: docker login or a credential helper)
image-push:
	$(GO) run ./hack/image $(IMAGE_FLAGS) -push $(REGISTRY)/herald:$(IMAGE_TAG)

# Tools run at a pinned version, outside any module: the workflow linter
# and the SBOM generator.
ACTIONLINT := github.com/rhysd/actionlint/cmd/actionlint@v1.7.12
CYCLONEDX  := github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0

# release-dry-run's version: the chart's, with a pre-release suffix naming
# the commit, so a lab that already holds the chart's appVersion pulls the
# dry run's image and not its own.
CHART_VERSION    := $(shell sed -n 's/^version:[[:space:]]*//p' deploy/helm/herald/Chart.yaml)
APP_VERSION      := $(shell sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$$/\1/p' deploy/helm/herald/Chart.yaml)
DRY_RUN_SUFFIX   ?= dryrun.$(shell git rev-parse --short HEAD 2>/dev/null || echo local)
DRY_RUN_REGISTRY ?= $(shell bin/herald-lab registry 2>/dev/null)

## release-dry-run: what the release workflow does except the final push:
## Herald's image for both platforms and the packaged chart, pushed over
## plain HTTP to $(DRY_RUN_REGISTRY) (default: the running lab's registry)
## as herald-lb/herald:$(APP_VERSION)-$(DRY_RUN_SUFFIX) and
## oci://…/herald-lb/charts/herald:$(CHART_VERSION)-$(DRY_RUN_SUFFIX), where
## the lab's nodes find them as ghcr.io/herald-lb/…
release-dry-run:
	@test -n "$(DRY_RUN_REGISTRY)" || { echo "no registry: start the lab (hack/lab.sh or bin/herald-lab up) or set DRY_RUN_REGISTRY=host:port"; exit 1; }
	$(GO) run ./hack/image -version v$(APP_VERSION)-$(DRY_RUN_SUFFIX) -revision '$(REVISION)' -source-date-epoch '$(SOURCE_DATE_EPOCH)' \
		-plain-http -push $(DRY_RUN_REGISTRY)/herald-lb/herald:$(APP_VERSION)-$(DRY_RUN_SUFFIX)
	helm=$$($(GO) run ./internal/testenv/cmd/buildtools | tail -n1)/helm && \
	rm -rf bin/chart && \
	$$helm package deploy/helm/herald --destination bin/chart \
		--version $(CHART_VERSION)-$(DRY_RUN_SUFFIX) --app-version $(APP_VERSION)-$(DRY_RUN_SUFFIX) && \
	$$helm push bin/chart/herald-$(CHART_VERSION)-$(DRY_RUN_SUFFIX).tgz oci://$(DRY_RUN_REGISTRY)/herald-lb/charts --plain-http
	$(MAKE) -s release-files RELEASE_CHART=bin/chart/herald-$(CHART_VERSION)-$(DRY_RUN_SUFFIX).tgz

## release-files: what a release publishes beside the image and the chart,
## in bin/release: the chart package, a CycloneDX SBOM of the herald
## binary's modules, and SHA256SUMS of both
## With PLUGIN=1 also the kubectl plugin: kubectl-herald_<os>_<arch>.tar.gz
## for Linux, macOS and Windows and its krew manifest herald.yaml (hack/krew).
RELEASE_CHART ?= $(firstword $(wildcard bin/chart/herald-*.tgz))
PLUGIN        ?= 0
release-files:
	@test -n "$(RELEASE_CHART)" || { echo "no chart package: helm package deploy/helm/herald --destination bin/chart first"; exit 1; }
	rm -rf bin/release && mkdir -p bin/release
	cp $(RELEASE_CHART) bin/release/
	$(GO) run $(CYCLONEDX) app -json -licenses=false -noserial -output bin/release/herald.cdx.json -main cmd/herald .
	if [ "$(PLUGIN)" = 1 ]; then $(MAKE) -s plugin; fi
	cd bin/release && sha256sum *.tgz *.cdx.json $$(ls *.tar.gz herald.yaml 2>/dev/null) > SHA256SUMS && cat SHA256SUMS

## plugin: the kubectl plugin's archives and krew manifest in bin/release
## (download URLs: the GitHub release of VERSION)
plugin:
	GOWORK=off $(GO) -C hack/krew run . -src $(CURDIR) -version $(VERSION) -out $(CURDIR)/bin/release -source-date-epoch '$(SOURCE_DATE_EPOCH)'

$(CONTROLLER_GEN):
	$(GO) -C hack/tools build -o $(TOOLS_CACHE)/ sigs.k8s.io/controller-tools/cmd/controller-gen

$(STATICCHECK):
	$(GO) -C hack/tools build -o $(TOOLS_CACHE)/ honnef.co/go/tools/cmd/staticcheck

## generate: deepcopy functions and CRD manifests from api/
generate: $(CONTROLLER_GEN)
	$(CONTROLLER_GEN) object paths=./api/... crd:crdVersions=v1 output:crd:artifacts:config=config/crd
	rm -f deploy/helm/herald/crds/*.yaml && cp config/crd/*.yaml deploy/helm/herald/crds/

## verify-generated: fail when generated files are stale
verify-generated: generate
	@if [ -n "$$(git status --porcelain -- api config/crd deploy/helm/herald/crds)" ]; then \
		echo "generated files are stale; run 'make generate' and commit:"; \
		git status --porcelain -- api config/crd deploy/helm/herald/crds; git --no-pager diff --stat -- api config/crd deploy/helm/herald/crds; exit 1; fi

## tools: build (or find cached) the control plane, kubectl and helm, a
## real node's kubelet, kube-proxy and containerd, and promtool (hack/promtool),
## for tests
tools:
	$(GO) run ./internal/testenv/cmd/buildtools -node -promtool

## lint: gofmt, go vet, staticcheck, actionlint, go mod tidy
lint: $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	$(GO) run $(ACTIONLINT) .github/workflows/*.yml
	$(GO) mod tidy -diff
	$(GO) -C hack/tools mod tidy -diff
	$(GO) -C hack/nodetools mod tidy -diff
	$(GO) -C hack/nodetools/containerd mod tidy -diff
	GOWORK=off $(GO) -C hack/promtool vet ./...
	GOWORK=off $(GO) -C hack/promtool mod tidy -diff
	GOWORK=off $(GO) -C hack/krew vet ./...
	GOWORK=off $(GO) -C hack/krew mod tidy -diff

## test: everything CI runs: generated files, lint, all tests with -race
test: verify-generated lint tools
	$(GO) test -race -count=1 -timeout 30m ./...
	GOWORK=off $(GO) -C hack/krew test -count=1 ./...

## test-short: unit tests only (no API server)
test-short:
	$(GO) test -short -count=1 ./...

## fuzz: run each fuzz target for $(FUZZTIME)
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; done

## bench: allocator benchmarks and the end-to-end IPAM benchmark
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/ipam/ ./bench/...

clean:
	rm -rf bin
