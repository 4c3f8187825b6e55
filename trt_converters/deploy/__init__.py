"""`trt-deploy`: Kubernetes and KServe manifests for a model repository in object storage."""
