# One image for every aiaas service; compose.yaml picks the command.
# CUDA is used when the container gets a GPU (onnxruntime-gpu needs the CUDA 13 runtime libraries, which
# the nvidia-* pip packages below provide); without one everything runs on the CPU.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 AIAAS_HOME=/data
WORKDIR /app

COPY clients/python /app/clients/python
COPY services /app/services
# Point PIP_EXTRA_INDEX_URL at a CPU-only PyTorch index to keep the image small.
ARG PIP_EXTRA_INDEX_URL=""
RUN pip install torch==2.13.0 \
 && pip install /app/clients/python /app/services \
 && pip install 'onnxruntime-gpu[cuda,cudnn]==1.31.1'

RUN useradd --create-home --uid 10001 aiaas && mkdir -p /data && chown aiaas /data
USER aiaas
VOLUME ["/data"]
# Ports: registry 50051, training 50052, serialization 50053, inference 8001, metrics 9464.
EXPOSE 50051 50052 50053 8001 9464
CMD ["aiaas-registry", "--host", "0.0.0.0"]
