"""Inference service: the Open Inference Protocol on ONNX Runtime."""
