"""Serialization service: ONNX export, quantization and proof."""
