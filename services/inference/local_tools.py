"""Tool calls on a local model whose chat template has no tool format: the mesh's fallback.

Gemma 3's template (the packaged model's) knows no tools, so the tools are described in the prompt
and the output's shape is forced while decoding, as llama.cpp's own "generic" tool format does:

- a call is one JSON object, `{"name": <a tool's name>, "arguments": <that tool's arguments>}`; with
  parallel calls allowed, the reply is a JSON array of 1 to MAX_PARALLEL_CALLS of them;
- tool_choice "required" or a named function: the output must be that JSON, under a JSON schema whose
  `name` is one of the tools (or the named one) and whose `arguments` follow that tool's parameters;
- "auto": a grammar admitting either plain text (not starting with `{`, `[` or blank) or the call JSON;
- "none": the tools described (a conversation may hold their calls), the output plain text that
  does not open like a call.

Earlier turns are laid out the same way: an assistant turn's calls as the JSON it would have written,
a tool's result as a user turn naming the tool. `CallScanner` reads the output as it is generated and
turns it into tool-call pieces (name first, then arguments as they come).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from services.inference.backends.base import (
    Message,
    OutputConstraint,
    Tool,
    ToolCall,
    ToolCallDelta,
    Tooling,
)
from services.inference.coalescing import merged

# A reply of parallel calls holds at most this many: a small model under a grammar that allows more
# may repeat one call until max_tokens.
MAX_PARALLEL_CALLS = 4


def active(tooling: Tooling | None) -> Tooling | None:
    """The tooling that shapes a generation: None when no tools are given."""
    return tooling if tooling is not None and tooling.tools else None


def _arguments_schema(tool: Tool) -> dict[str, Any]:
    schema = tool.schema()
    # An object schema that does not say lets any property in; a small model then invents some.
    if schema.get("type") == "object" and "additionalProperties" not in schema:
        schema = {**schema, "additionalProperties": False}
    return schema


def call_schema(tooling: Tooling) -> dict[str, Any]:
    """The JSON schema of the reply that calls tools: one call, or an array of them when parallel."""
    tools = [t for t in tooling.tools if tooling.choice != "function" or t.name == tooling.function]
    alternatives = [
        {
            "type": "object",
            "properties": {"name": {"const": tool.name}, "arguments": _arguments_schema(tool)},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for tool in tools
    ]
    one = alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}
    if not tooling.parallel_calls:
        return one
    return {"type": "array", "items": one, "minItems": 1, "maxItems": MAX_PARALLEL_CALLS}


# JSON without free whitespace (see xllamacpp's _COMPACT_JSON), inside a Lark grammar too.
_COMPACT = {"x-guidance": {"whitespace_flexible": False}}


# Plain text may not open like the call JSON (or blank), so the first character says which a reply is.
_TEXT = "%llguidance {}\nTEXT: /[^\\s{\\[](.|\\n)*/\n"


def constraint(tooling: Tooling) -> OutputConstraint:
    """What the output must be: the call JSON ("required", a named tool); that or plain text ("auto");
    plain text ("none": a small model shown calls in the conversation writes another as text
    otherwise). The grammars are llguidance's Lark format (the engine compiles JSON schemas with
    llguidance too), which embeds a JSON schema as `%json`."""
    if tooling.choice == "none":
        return OutputConstraint("grammar", grammar=f"{_TEXT}start: TEXT\n")
    schema = {**_COMPACT, **call_schema(tooling)}
    if tooling.choice in ("required", "function"):
        return OutputConstraint("json_schema", json_schema=schema, strict=True)
    return OutputConstraint(
        "grammar", grammar=f"{_TEXT}start: TEXT | call\ncall: %json {json.dumps(schema)}\n"
    )


def instructions(tooling: Tooling) -> str:
    """The tools and the call format, as system text: one line per tool and an example call (a JSON
    dump of the tools made Gemma 3 270M copy the list out more often; this terser layout, less)."""
    lines = ["Tools you can call:"]
    lines += [
        f"- {t.name}: {t.description or 'no description'}; arguments: {json.dumps(t.schema(), ensure_ascii=False)}"
        for t in tooling.tools
    ]
    if tooling.choice == "none":
        return "\n".join([*lines, "Call no tool now: answer in plain text."])
    named = tooling.function if tooling.choice == "function" else tooling.tools[0].name
    example = f'{{"name": "{named}", "arguments": {{...}}}}'
    if tooling.parallel_calls:
        lines.append(f"To call tools, reply with a JSON array of calls only, like [{example}].")
    else:
        lines.append(f"To call a tool, reply with JSON only, like {example}.")
    if tooling.choice == "function":
        lines.append(f"Reply with a call of the tool {tooling.function}.")
    elif tooling.choice == "required":
        lines.append("Reply with a tool call.")
    else:
        lines.append("Otherwise answer normally.")
    return "\n".join(lines)


def calls_text(calls: Sequence[ToolCall]) -> str:
    """An assistant turn's calls as the model writes them (compact JSON: one object, or an array)."""
    objects = [{"name": c.name, "arguments": _loads_object(c.arguments)} for c in calls]
    value: Any = objects[0] if len(objects) == 1 else objects
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _loads_object(text: str) -> Any:
    try:
        return json.loads(text or "{}")
    except ValueError:
        return {}


def plain_messages(messages: Sequence[Message], tooling: Tooling | None) -> list[Message]:
    """The conversation in turns a template without tools renders: the tools' description leads the
    system text, calls become the assistant's JSON, and each run of tool results one user turn."""
    names = {c.id: c.name for m in messages for c in m.tool_calls}
    plain: list[Message] = []
    if tooling is not None and tooling.tools:
        plain.append(Message("system", instructions(tooling)))
    results: list[str] = []
    for message in messages:
        if message.role == "tool":
            tool = names.get(message.tool_call_id, "a tool")
            results.append(f"The tool {tool} returned:\n{message.content}")
            continue
        if results:
            plain.append(Message("user", "\n\n".join(results)))
            results = []
        if message.tool_calls:
            text = "\n".join(part for part in (message.content, calls_text(message.tool_calls)) if part)
            plain.append(Message("assistant", text))
        else:
            plain.append(Message(message.role, message.content))
    if results:
        plain.append(Message("user", "\n\n".join(results)))
    return plain


def call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass
class _Call:
    id: str
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    # Whether its first piece (id and name) has gone out; arguments are held until it has.
    announced: bool = False


class CallScanner:
    """Reads the call JSON as it is generated and yields tool-call pieces: a call's id and name as
    soon as its name is complete, then its arguments' text as it comes (the raw JSON the model
    wrote, so the pieces add up to the arguments of the finished call).

    A character scanner over JSON's strings and brackets: `level` is the depth of a call object
    (1 for one call, 2 inside the array of parallel calls)."""

    def __init__(self, parallel: bool) -> None:
        self._level = 2 if parallel else 1
        self._depth = 0
        self._in_string = self._escape = False
        self._string: list[str] = []
        self._key = ""
        # Whether the next value at the call's level is the value of `_key`.
        self._after_colon = False
        # While inside the arguments value: the depth it opened at.
        self._arguments_from: int | None = None
        self._calls: list[_Call] = []
        self.text: list[str] = []

    def push(self, text: str) -> list[ToolCallDelta]:
        pieces: list[ToolCallDelta] = []
        self.text.append(text)
        for char in text:
            self._char(char, pieces)
        return merged(pieces)

    def _char(self, char: str, pieces: list[ToolCallDelta]) -> None:
        if self._arguments_from is not None:
            self._argument_char(char, pieces)
            return
        if self._in_string:
            if self._string_ends(char):
                self._string_done("".join(self._string), pieces)
            else:
                self._string.append(char)
            return
        if char == '"':
            self._in_string, self._string = True, []
        elif char in "{[":
            self._depth += 1
            if char == "{" and self._depth == self._level:
                self._calls.append(_Call(call_id()))
                self._key, self._after_colon = "", False
        elif char in "}]":
            self._depth -= 1
        elif char == ":" and self._depth == self._level:
            self._after_colon = True
            if self._key == "arguments":
                self._arguments_from = self._depth
        elif char == ",":
            self._after_colon = False

    def _string_ends(self, char: str) -> bool:
        """Read a character inside a JSON string: whether it is the quote that ends the string."""
        if self._escape:
            self._escape = False
        elif char == "\\":
            self._escape = True
        elif char == '"':
            self._in_string = False
            return True
        return False

    def _string_done(self, raw: str, pieces: list[ToolCallDelta]) -> None:
        if self._depth != self._level or not self._calls:
            return
        value = json.loads(f'"{raw}"')
        if not self._after_colon:
            self._key = value
            return
        self._after_colon = False
        call = self._calls[-1]
        if self._key == "name" and not call.name:
            call.name, call.announced = value, True
            pieces.append(ToolCallDelta(len(self._calls) - 1, call.id, call.name, "".join(call.arguments)))

    def _argument_char(self, char: str, pieces: list[ToolCallDelta]) -> None:
        assert self._arguments_from is not None
        call = self._calls[-1]
        if not call.arguments and char.isspace():
            return
        closes = False
        if self._in_string:
            self._string_ends(char)
        elif char == '"':
            self._in_string = True
        elif char in "{[":
            self._depth += 1
        elif char in "}]":
            if self._depth == self._arguments_from:  # the call object closes: arguments were a scalar
                self._arguments_from = None
                self._after_colon = False
                self._depth -= 1
                return
            self._depth -= 1
            closes = self._depth == self._arguments_from
        elif char == "," and self._depth == self._arguments_from:
            self._arguments_from = None
            self._after_colon = False
            return
        call.arguments.append(char)
        if call.announced:
            pieces.append(ToolCallDelta(len(self._calls) - 1, arguments=char))
        if closes:
            self._arguments_from = None
            self._after_colon = False

    def calls(self) -> tuple[ToolCall, ...]:
        """The calls the output made, once it is complete (the output parsed as the call JSON)."""
        return tuple(ToolCall(c.id, c.name, "".join(c.arguments) or "{}") for c in self._calls if c.name)
