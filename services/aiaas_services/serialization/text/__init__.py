"""Text models: Hugging Face folders in (vetted, registered as format HF), ONNX graphs that take strings out."""

# Variants a text graph can be made in (int8-static calibrates on sentences: built-in or the user's).
TEXT_VARIANTS = ("fp32", "fp16", "int8-dynamic", "int8-static")
