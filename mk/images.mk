# Container images, built locally without a registry or a Docker daemon: rheo-base:bookworm from
# debootstrap as an OCI layout, then rheo and rheo-operator (tags: latest and the workspace
# version) with host-built release binaries, written by umoci as OCI archives under
# $(RHEO_CACHE)/images/oci-archives and loaded into the test cluster's containerd (scripts/k8s/)
# when it runs. Not in `make test`: it needs root, debootstrap and minutes.
.PHONY: images image-base image-worker image-operator test-images

## make images: build the rheo and rheo-operator OCI images (also tagged with the workspace version)
images:
	CARGO="$(CARGO)" docker/build.sh worker operator

## make image-base: the debootstrap base image (cached; docker/base.sh --force rebuilds)
image-base:
	docker/base.sh

image-worker:
	CARGO="$(CARGO)" docker/build.sh worker

image-operator:
	CARGO="$(CARGO)" docker/build.sh operator

## make test-images: build the images, then run them with runc (word count, --help, jobs, crd, uid, read-only root)
test-images: images
	docker/test-images.sh
