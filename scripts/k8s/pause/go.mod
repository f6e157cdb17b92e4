// The pod sandbox ("pause") program of the test cluster: built locally, so no image is pulled.
module rheo.io/pause

go 1.24.0
