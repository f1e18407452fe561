"""The export -> variants -> proof pipeline as plain functions (no gRPC, no registry).

``export.py`` turns a torch module into a checked, ORT-optimized FP32 ONNX file; ``variants.py`` derives
FP16 and INT8 files from it; ``proof.py`` measures each file against the reference outputs;
``validate.py`` vets uploaded ONNX files before anything loads them; ``run.py`` strings it together.
"""
