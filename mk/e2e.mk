# A real single-node Kubernetes cluster on this machine (scripts/k8s/): Kubernetes built from its
# Go modules, Debian's containerd/runc/CNI plugins, images built with umoci and loaded into
# containerd. Needs root. `make e2e` is part of `make test`.
.PHONY: e2e e2e-tools e2e-up e2e-down e2e-status e2e-cluster-smoke

## make e2e-tools: build kube-apiserver, controller-manager, scheduler, kubelet, kube-proxy, kubectl, etcd, helm (cached)
e2e-tools:
	scripts/k8s/build-tools.sh

## make e2e-up: start the cluster (waits until the node is Ready); `eval "$$(scripts/k8s/cluster.sh env)"` for kubectl
e2e-up: e2e-tools
	scripts/k8s/cluster.sh up

## make e2e-down: stop the cluster and remove its pods, mounts, network rules and state
e2e-down:
	scripts/k8s/cluster.sh down

e2e-status:
	scripts/k8s/cluster.sh status

## make e2e-cluster-smoke: a Pod from the rheo image runs a job, a Deployment behind a Service, a pod rescheduled
e2e-cluster-smoke: image-worker e2e-tools
	scripts/k8s/smoke.sh

## make e2e: helm install of the operator (a pod from its image), a SeaweedFS pod, the CRD on the real API server
## (examples accepted, invalid fixtures rejected naming the field), word-count-s3 through a deleted TaskManager
## and JobManager pod with exact output, a reactive kubectl scale, kubectl delete fj, helm upgrade/uninstall;
## then the lifecycle scenarios (scripts/k8s/e2e-lifecycle.sh) and beside them Rheo's autoscaler
## (scripts/k8s/e2e-autoscale.sh). RHEO_E2E_SUITES picks among "crd jobs lifecycle autoscale".
## Its images hold debug binaries (the ones cargo test built); RHEO_E2E_PROFILE=release for release ones.
e2e: e2e-tools
	CARGO="$(CARGO)" scripts/k8s/e2e.sh
