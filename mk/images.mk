# Container images, built locally (no registry): rheo-base:bookworm from debootstrap, then
# rheo:latest (worker) and rheo-operator:latest with host-built release binaries.
# Not in `make test`: it needs root, debootstrap and minutes. Run `make test-images` by hand.
.PHONY: images image-base image-worker image-operator test-images

## make images: build rheo:latest and rheo-operator:latest (also tagged with the workspace version)
images:
	CARGO="$(CARGO)" docker/build.sh worker operator

## make image-base: the debootstrap base image (cached; docker/base.sh --force rebuilds)
image-base:
	docker/base.sh

image-worker:
	CARGO="$(CARGO)" docker/build.sh worker

image-operator:
	CARGO="$(CARGO)" docker/build.sh operator

## make test-images: build the images, then run them (word count, --help, jobs, crd, uid, read-only root)
test-images: images
	docker/test-images.sh
