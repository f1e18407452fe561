"""The KServe V2 HTTP/REST front door of the inference service (same process, loop and data plane as gRPC)."""
