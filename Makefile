.PHONY: dev test test-oldest check generate control-plane properties

# Run the operator on a local control plane with a demo, and print a curl to try it.
dev:
	scripts/dev

# Every test: unit tests and the end-to-end suites against a real kube-apiserver and etcd of the
# newest Kubernetes, then tests/e2e.rs against the oldest the chart supports (test-oldest).
test: control-plane
	cargo test --all-targets
	$(MAKE) --no-print-directory test-oldest

# tests/e2e.rs against the oldest Kubernetes the chart's kubeVersion allows (DEPROVISIONER_K8S=oldest:
# kube-apiserver, kubectl and etcd from hack/controlplane-1.31, built once and cached), and
# tests/privilege.rs there too: the admission policies are CEL, whose dialect follows the version.
test-oldest:
	DEPROVISIONER_K8S=oldest scripts/control-plane build
	DEPROVISIONER_K8S=oldest cargo test --test e2e --test privilege

# A longer property-test search than `make test` runs (tests/properties.rs; PROPTEST_CASES overrides).
properties:
	PROPTEST_CASES=$${PROPTEST_CASES:-20000} cargo test --test properties

# Build (or find cached) kube-apiserver, kubectl, etcd and helm.
control-plane:
	scripts/control-plane build

# Where `make generate` writes: nothing else lives there, so a new file there is generated too.
GENERATED := crds charts/deprovisioner/crds ':(glob)deploy/*.yaml'

# Write every generated file: the CRDs from the code (and the chart's copy of them), and
# deploy/ from the chart (deploy/render uses the cached helm, building it if missing).
generate:
	cargo run --quiet --bin deprovisioner -- crd > crds/crds.yaml.new || { rm -f crds/crds.yaml.new; exit 1; }
	mv crds/crds.yaml.new crds/crds.yaml
	cp crds/crds.yaml charts/deprovisioner/crds/crds.yaml
	deploy/render

# What CI runs besides the tests: format, lints, and no drift between the generated files and
# what generates them (changed or new generated files fail it).
check:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	$(MAKE) --no-print-directory generate
	@git diff --exit-code -- $(GENERATED) && test -z "$$(git status --porcelain -- $(GENERATED))" \
	  || { git status --short -- $(GENERATED); \
	       echo "Generated files are out of date: run 'make generate' and commit the result." >&2; exit 1; }
