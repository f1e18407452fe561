"""Text models shared by training and serialization: the Hugging Face folder check, the string signature and the
string-in ONNX graph builder (tokenizer inside). Plain Python + torch/onnx; no grpc, no generated code."""
