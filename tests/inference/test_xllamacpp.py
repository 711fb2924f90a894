"""The xllamacpp engine's slots on a real grpc.aio server with the real Gemma 3 270M: continuous
batching, prefix reuse, the deterministic mode, constrained decoding, logprobs and slot gauges."""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import jsonschema
import pytest
import pytest_asyncio
from llmmesh.common.v1 import common_pb2
from llmmesh.inference.v1 import inference_pb2, inference_pb2_grpc
from prometheus_client import REGISTRY

from services.common.registry import parse_registry
from services.inference.config import InferenceSettings
from services.inference.server import create_server
from tests.support.mesh import channel_to, error_code, running

MODEL = "gemma-3-270m"
DETERMINISTIC = "gemma-3-270m-deterministic"
SYSTEM = (
    "You are a terse assistant for a shipping company. Answer in one short sentence, never more. "
    "Our depots are in Osaka, Rotterdam and Santos; parcels take three to nine days between them."
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

# A grammar no output shorter than 2000 characters satisfies: the model cannot end its turn early,
# so a request made with it keeps its slot busy until it is cancelled or reaches max_tokens.
ENDLESS = common_pb2.OutputConstraint(grammar="root ::= [a-z ]{2000}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stub(model_path: Path) -> AsyncIterator[inference_pb2_grpc.InferenceServiceStub]:
    gemma = {"backend": "llama_cpp", "path": str(model_path), "context_length": 1024}
    models = parse_registry(
        {"models": {MODEL: {**gemma, "slots": 4}, DETERMINISTIC: {**gemma, "deterministic": True}}}
    )
    server, port = create_server(InferenceSettings(port=0), models)
    async with running(server), channel_to(port) as channel:
        yield inference_pb2_grpc.InferenceServiceStub(channel)


def chat(
    text: str, model: str = MODEL, max_tokens: int = 24, system: str = "", **fields: object
) -> inference_pb2.GenerateRequest:
    messages = [common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content=system)] if system else []
    messages.append(common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=text))
    return inference_pb2.GenerateRequest(
        model=model,
        conversation=common_pb2.Conversation(messages=messages),
        params=common_pb2.SamplingParams(max_tokens=max_tokens, temperature=0.0),
        **fields,
    )


class Timed:
    """A generation's deltas with the time each arrived, and its result."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.deltas: list[common_pb2.TokenDelta] = []
        self.result = common_pb2.GenerationResult()

    @property
    def text(self) -> str:
        return "".join(d.text for d in self.deltas)


async def timed(call: grpc.aio.UnaryStreamCall) -> Timed:
    out = Timed()
    async for response in call:
        if response.HasField("delta"):
            out.arrivals.append(time.monotonic())
            out.deltas.append(response.delta)
        else:
            out.result = response.result
    return out


def gauge(name: str, model: str) -> float:
    label = "model_name" if name.startswith("vllm:") else "model"
    value = REGISTRY.get_sample_value(name, {label: model})
    return 0.0 if value is None else value


async def test_concurrent_requests_decode_together(stub) -> None:
    prompts = [f"Tell a long story about a {thing}." for thing in ("dog", "ship", "city", "planet")]
    runs = await asyncio.gather(
        *(timed(stub.Generate(chat(p, max_tokens=24, constraint=ENDLESS))) for p in prompts)
    )
    assert [run.result.usage.completion_tokens for run in runs] == [24] * 4
    # Batched: every request had its first token before any other request had its last one.
    first_tokens = [run.arrivals[0] for run in runs]
    last_tokens = [run.arrivals[-1] for run in runs]
    assert max(first_tokens) < min(last_tokens), "the requests ran one after another"


async def test_deterministic_mode_gives_each_of_four_concurrent_streams_its_text_alone(stub) -> None:
    prompts = ["Write a haiku about the sea", "Name three colours.", "Count to five.", "Say hello."]
    alone = [await timed(stub.Generate(chat(p, DETERMINISTIC))) for p in prompts]
    together = await asyncio.gather(*(timed(stub.Generate(chat(p, DETERMINISTIC))) for p in prompts))
    assert [run.result.text for run in together] == [run.result.text for run in alone]
    assert all(run.result.usage.cached_tokens == 0 for run in together), "no prefix reuse in this mode"
    again = await timed(stub.Generate(chat(prompts[0], DETERMINISTIC)))
    assert again.result.text == alone[0].result.text


async def test_cancelling_one_of_four_lets_the_others_finish(stub) -> None:
    calls = [stub.Generate(chat(f"Story {n}", max_tokens=48, constraint=ENDLESS)) for n in range(4)]
    others = [asyncio.create_task(timed(call)) for call in calls[1:]]
    received = 0
    async for _ in calls[0]:
        received += 1
        if received == 3:
            break
    calls[0].cancel()
    finished = await asyncio.gather(*others)
    assert [run.result.usage.completion_tokens for run in finished] == [48] * 3
    assert all(run.text == run.result.text and run.text.strip() for run in finished)


async def test_a_prompt_sharing_a_prefix_reports_cached_tokens(stub) -> None:
    first = await timed(stub.Generate(chat("Where are your depots?", system=SYSTEM, max_tokens=8)))
    second = await timed(stub.Generate(chat("How long does a parcel take?", system=SYSTEM, max_tokens=8)))
    assert first.result.usage.prompt_tokens > 40
    # Gemma puts the system text at the head of the first user turn: the shared part is the BOS, the
    # turn marker and the system prompt.
    assert second.result.usage.cached_tokens >= 40
    assert second.result.usage.cached_tokens < second.result.usage.prompt_tokens
    assert REGISTRY.get_sample_value("llmmesh_inference_prompt_tokens_cached_total", {"model": MODEL})


async def test_slot_gauges_follow_the_running_requests(stub) -> None:
    calls = [stub.Generate(chat(f"Story {n}", max_tokens=400, constraint=ENDLESS)) for n in range(3)]
    for call in calls:
        await call.read()  # each is decoding
    assert gauge("vllm:num_requests_running", MODEL) == 3
    assert gauge("vllm:num_requests_waiting", MODEL) == 0
    assert gauge("llmmesh_inference_slots", MODEL) == 4
    assert gauge("llmmesh_inference_slots_busy", MODEL) == 3
    assert 0 < gauge("vllm:kv_cache_usage_perc", MODEL) <= 1
    for call in calls:
        call.cancel()
    for _ in range(100):
        if (
            gauge("vllm:num_requests_running", MODEL) == 0
            and gauge("llmmesh_inference_slots_busy", MODEL) == 0
        ):
            break
        await asyncio.sleep(0.05)
    assert gauge("vllm:num_requests_running", MODEL) == 0
    assert gauge("llmmesh_inference_slots_busy", MODEL) == 0
    assert gauge("vllm:kv_cache_usage_perc", MODEL) == 0


async def test_a_full_wait_queue_is_refused_with_model_busy(model_path: Path) -> None:
    gemma = {"backend": "llama_cpp", "path": str(model_path), "context_length": 512, "slots": 2}
    server, port = create_server(
        InferenceSettings(port=0, max_waiting=1), parse_registry({"models": {"two-slots": gemma}})
    )
    async with running(server), channel_to(port) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        model = "two-slots"
        busy = [stub.Generate(chat(f"Story {n}", model, 400, constraint=ENDLESS)) for n in range(2)]
        for call in busy:
            await call.read()
        waiting = asyncio.create_task(timed(stub.Generate(chat("Hello", model, 2))))
        for _ in range(100):
            if gauge("vllm:num_requests_waiting", model) == 1:
                break
            await asyncio.sleep(0.05)
        seen = [gauge(n, model) for n in ("vllm:num_requests_running", "vllm:num_requests_waiting")]
        assert seen == [2, 1]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await timed(stub.Generate(chat("Hello", model, 2)))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_code(caught.value) == "model_busy"
        busy[0].cancel()
        assert (await waiting).result.usage.completion_tokens == 2
        busy[1].cancel()


SCHEMAS = {
    "nested-object": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "address": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 20},
                    # bounded, as the strings are: a small model under a grammar may run on with digits
                    "zip": {"type": "integer", "minimum": 0, "maximum": 99999},
                },
                "required": ["city", "zip"],
                "additionalProperties": False,
            },
        },
        "required": ["name", "address"],
        "additionalProperties": False,
    },
    "enum": {
        "type": "object",
        "properties": {"colour": {"enum": ["red", "green", "blue"]}, "sure": {"type": "boolean"}},
        "required": ["colour", "sure"],
        "additionalProperties": False,
    },
    "array": {
        "type": "object",
        "properties": {
            "fruits": {
                "type": "array",
                "items": {"type": "string", "maxLength": 12},
                "minItems": 2,
                "maxItems": 3,
            }
        },
        "required": ["fruits"],
        "additionalProperties": False,
    },
}


@pytest.mark.parametrize("name", list(SCHEMAS))
async def test_json_schema_output_validates(stub, name: str) -> None:
    schema = SCHEMAS[name]
    constraint = common_pb2.OutputConstraint(
        json_schema=common_pb2.JsonSchemaConstraint(schema=json.dumps(schema), strict=True)
    )
    run = await timed(stub.Generate(chat(f"Answer as JSON ({name}).", max_tokens=120, constraint=constraint)))
    assert run.result.finish_reason == common_pb2.FINISH_REASON_STOP, run.result.text
    jsonschema.validate(json.loads(run.result.text), schema)


async def test_json_object_output_parses(stub) -> None:
    constraint = common_pb2.OutputConstraint(json_object=common_pb2.JsonObjectConstraint())
    run = await timed(stub.Generate(chat("Describe a cat as JSON.", max_tokens=60, constraint=constraint)))
    if run.result.finish_reason == common_pb2.FINISH_REASON_STOP:
        assert isinstance(json.loads(run.result.text), dict)
    else:  # cut at max_tokens: still the start of one object
        assert run.result.text.lstrip().startswith("{")


async def test_grammar_output_matches(stub) -> None:
    grammar = 'root ::= ("yes" | "no") ", because " [a-z ]{1,30} "."'
    constraint = common_pb2.OutputConstraint(grammar=grammar)
    run = await timed(stub.Generate(chat("Is the sea blue?", max_tokens=40, constraint=constraint)))
    assert re.fullmatch(r"(yes|no), because [a-z ]{1,30}\.", run.result.text), run.result.text


@pytest.mark.parametrize(
    ("constraint", "named"),
    [
        (common_pb2.OutputConstraint(grammar="root ::= ("), "grammar"),
        (common_pb2.OutputConstraint(grammar="root ::= undefined-rule"), "grammar"),
        (
            common_pb2.OutputConstraint(json_schema=common_pb2.JsonSchemaConstraint(schema='{"type": 5}')),
            "JSON schema",
        ),
        (
            common_pb2.OutputConstraint(json_schema=common_pb2.JsonSchemaConstraint(schema="{not json")),
            "not JSON",
        ),
    ],
    ids=["unbalanced-grammar", "undefined-rule", "bad-type", "not-json"],
)
async def test_an_invalid_schema_or_grammar_is_invalid_argument_and_the_engine_lives_on(
    stub, constraint: common_pb2.OutputConstraint, named: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await timed(stub.Generate(chat("Hi", constraint=constraint)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_code(caught.value) == "invalid_constraint"
    assert named in caught.value.details()
    after = await timed(stub.Generate(chat("Say hello.", max_tokens=3)))
    assert after.result.usage.completion_tokens == 3


async def test_logprobs_come_with_each_token_and_add_up(stub) -> None:
    run = await timed(
        stub.Generate(chat("Name three colours.", max_tokens=12, logprobs=True, top_logprobs=3))
    )
    logprobs = list(run.result.logprobs)
    assert len(logprobs) == run.result.usage.completion_tokens
    # Tokens that came together travel as one delta: its logprobs and token count add up all the same.
    assert [lp.token for d in run.deltas for lp in d.logprobs] == [lp.token for lp in logprobs]
    assert sum(d.tokens for d in run.deltas) == run.result.usage.completion_tokens
    assert "".join(lp.token for lp in logprobs).startswith(run.result.text[:5])
    for item in logprobs:
        assert item.logprob <= 0
        tops = [t.logprob for t in item.top_logprobs]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True)
        assert sum(math.exp(t) for t in tops) <= 1.0001
        # The model's own probabilities, before the repeat penalty steers the pick: the chosen
        # token need not be the likeliest, but none is likelier than the top one.
        assert item.logprob <= tops[0] + 1e-4


async def test_top_logprobs_out_of_range_is_refused(stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await timed(stub.Generate(chat("Hi", logprobs=True, top_logprobs=21)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_an_unloaded_model_loads_again_and_generates(model_path: Path) -> None:
    from services.inference.backends import create_backend
    from services.inference.backends.base import Finished, GenerationInput, Message, Sampling

    config = parse_registry(
        {"models": {"reloaded": {"backend": "llama_cpp", "path": str(model_path), "context_length": 256}}}
    ).models["reloaded"]
    backend = create_backend("reloaded", config, InferenceSettings(port=0))
    request = GenerationInput(
        sampling=Sampling(max_tokens=3, temperature=0), messages=(Message("user", "Hi"),)
    )
    for _ in range(2):
        await backend.load()
        events = [event async for event in backend.generate(request)]
        assert isinstance(events[-1], Finished) and events[-1].completion_tokens == 3
        await backend.unload()
        assert not backend.loaded
    await backend.close()
