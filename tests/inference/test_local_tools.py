"""The local model's tool-call fallback as pure logic: the call schema, the prompt's turns and the
scanner that turns the generated JSON into tool-call pieces."""

from __future__ import annotations

import json

import jsonschema
import pytest

from services.inference.backends.base import Message, Tool, ToolCall, ToolCallDelta, Tooling
from services.inference.local_tools import (
    MAX_PARALLEL_CALLS,
    CallScanner,
    call_schema,
    constraint,
    plain_messages,
)

WEATHER = Tool(
    "weather",
    "The weather in a city",
    json.dumps({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
)
CLOCK = Tool("clock")


def test_the_call_schema_admits_only_a_given_tool_with_its_own_arguments() -> None:
    schema = call_schema(Tooling((WEATHER, CLOCK), "required", parallel_calls=False))
    jsonschema.validate({"name": "weather", "arguments": {"city": "Tokyo"}}, schema)
    jsonschema.validate({"name": "clock", "arguments": {}}, schema)
    for wrong in (
        {"name": "weather", "arguments": {}},  # its required city
        {"name": "clock", "arguments": {"city": "Tokyo"}},  # a tool without arguments takes none
        {"name": "radio", "arguments": {}},
        [{"name": "clock", "arguments": {}}],
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong, schema)


def test_a_named_tool_and_parallel_calls_make_a_bounded_array_of_that_tool() -> None:
    schema = call_schema(Tooling((WEATHER, CLOCK), "function", function="clock"))
    jsonschema.validate([{"name": "clock", "arguments": {}}] * MAX_PARALLEL_CALLS, schema)
    for wrong in (
        [],
        [{"name": "weather", "arguments": {"city": "Oslo"}}],
        [{"name": "clock", "arguments": {}}] * 5,
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong, schema)


def test_required_is_a_json_schema_and_auto_a_grammar_that_also_admits_text() -> None:
    required = constraint(Tooling((WEATHER,), "required"))
    assert required.kind == "json_schema" and required.json_schema is not None
    assert required.json_schema["type"] == "array"
    auto = constraint(Tooling((WEATHER,), "auto", parallel_calls=False))
    assert auto.kind == "grammar" and auto.grammar.startswith("%llguidance")
    assert "start: TEXT | call" in auto.grammar and '"const": "weather"' in auto.grammar
    none = constraint(Tooling((WEATHER,), "none"))
    assert none.kind == "grammar" and "start: TEXT\n" in none.grammar and "%json" not in none.grammar


def test_calls_and_results_become_turns_a_template_without_tools_renders() -> None:
    call = ToolCall("call_1", "weather", '{"city": "Tokyo"}')
    messages = [
        Message("system", "Be brief."),
        Message("user", "Weather in Tokyo?"),
        Message("assistant", "", (call,)),
        Message("tool", "22C and sunny", tool_call_id="call_1"),
    ]
    plain = plain_messages(messages, Tooling((WEATHER,), "auto"))
    assert [m.role for m in plain] == ["system", "system", "user", "assistant", "user"]
    assert plain[0].content.startswith("Tools you can call:\n- weather: The weather in a city; arguments:")
    assert plain[3].content == '{"name":"weather","arguments":{"city":"Tokyo"}}'
    assert plain[4].content == "The tool weather returned:\n22C and sunny"
    assert all(not m.tool_calls and not m.tool_call_id for m in plain)
    # Without tools nothing is added; "none" describes them but asks for text.
    assert plain_messages(messages[:2], None) == messages[:2]
    assert plain_messages(messages[:2], Tooling((WEATHER,), "none"))[0].content.endswith(
        "Call no tool now: answer in plain text."
    )


def _scan(text: str, parallel: bool, size: int) -> tuple[list[ToolCallDelta], CallScanner]:
    scanner = CallScanner(parallel)
    pieces: list[ToolCallDelta] = []
    for at in range(0, len(text), size):
        pieces += scanner.push(text[at : at + size])
    return pieces, scanner


@pytest.mark.parametrize("size", [1, 3, 1000])
def test_the_scanner_names_each_call_first_then_streams_its_arguments(size: int) -> None:
    # Brackets, commas, quotes and an escaped quote inside strings must not end the arguments.
    tricky = '{"city":"S\\"ao {P}, [aulo]","n":[1,{"a":2}]}'
    text = f'[{{"name":"weather","arguments":{tricky}}},{{"name":"clock","arguments":{{}}}}]'
    pieces, scanner = _scan(text, parallel=True, size=size)
    calls = scanner.calls()
    assert [(c.name, c.arguments) for c in calls] == [("weather", tricky), ("clock", "{}")]
    assert json.loads(calls[0].arguments)["city"] == 'S"ao {P}, [aulo]'
    for index, call in enumerate(calls):
        mine = [p for p in pieces if p.index == index]
        assert (mine[0].id, mine[0].name) == (call.id, call.name)
        assert all(not p.id and not p.name for p in mine[1:])
        assert "".join(p.arguments for p in mine) == call.arguments
    assert calls[0].id != calls[1].id and calls[0].id.startswith("call_")


def test_one_call_and_an_output_cut_short() -> None:
    pieces, scanner = _scan('{"name":"weather","arguments":{"city":"To', parallel=False, size=4)
    [call] = scanner.calls()
    assert (call.name, call.arguments) == ("weather", '{"city":"To')
    assert "".join(p.arguments for p in pieces) == call.arguments
