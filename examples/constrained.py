"""Constrained decoding and logprobs on a local model, through the inference service's gRPC contract.

Run against `scripts/up` (inference on 127.0.0.1:50052):  .venv/bin/python examples/constrained.py
"""

from __future__ import annotations

import json
import sys

import grpc
from llmmesh.common.v1 import common_pb2
from llmmesh.inference.v1 import inference_pb2, inference_pb2_grpc

ADDRESS = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50052"
SCHEMA = {
    "type": "object",
    "properties": {"colour": {"enum": ["red", "green", "blue"]}, "sure": {"type": "boolean"}},
    "required": ["colour", "sure"],
    "additionalProperties": False,
}


def generate(stub: inference_pb2_grpc.InferenceServiceStub, **fields: object) -> common_pb2.GenerationResult:
    request = inference_pb2.GenerateRequest(
        model="gemma-3-270m",
        prompt="The colour of the sky, as JSON:",
        params=common_pb2.SamplingParams(max_tokens=40, temperature=0),
        **fields,
    )
    return next(event.result for event in stub.Generate(request) if event.HasField("result"))


def main() -> None:
    with grpc.insecure_channel(ADDRESS) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        schema = common_pb2.JsonSchemaConstraint(schema=json.dumps(SCHEMA), strict=True)
        print("json_schema:", generate(stub, constraint=common_pb2.OutputConstraint(json_schema=schema)).text)
        grammar = common_pb2.OutputConstraint(grammar='root ::= "yes" | "no"')
        answer = generate(stub, constraint=grammar, logprobs=True, top_logprobs=2)
        print("grammar:", answer.text, [(t.token, round(t.logprob, 2)) for t in answer.logprobs])
        try:
            generate(stub, constraint=common_pb2.OutputConstraint(grammar="root ::= ("))
        except grpc.RpcError as error:
            print("bad grammar:", error.code().name, error.details())


if __name__ == "__main__":
    main()
