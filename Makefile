.PHONY: dev test check control-plane

# Run the operator on a local control plane with a demo, and print a curl to try it.
dev:
	scripts/dev

# Every test: unit tests and the end-to-end suites against a real kube-apiserver and etcd.
test: control-plane
	cargo test --all-targets

# Build (or find cached) kube-apiserver, kubectl, etcd and helm.
control-plane:
	scripts/control-plane build

# What CI runs besides the tests.
check:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	scripts/check-generated
