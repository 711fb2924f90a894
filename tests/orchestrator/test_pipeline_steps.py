"""Pipeline steps: the run's input, each step's template rendered with it and with earlier outputs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from llmmesh.common.v1 import common_pb2
from llmmesh.store.v1 import store_pb2

from services.common.registry import Pipeline, PipelineStep
from services.orchestrator.errors import InvalidPipelineInput, PipelineTemplateError
from services.orchestrator.pipelines import render_step, run_input_of, step_spec


def step(prompt: str, system: str | None = None, name: str = "outline", **fields: Any) -> PipelineStep:
    return PipelineStep(name=name, prompt=prompt, system=system, **fields)


def template_error(step_: PipelineStep, run_input: dict[str, Any], outputs: dict[str, str]) -> str:
    with pytest.raises(PipelineTemplateError) as caught:
        render_step(step_, run_input, outputs)
    return caught.value.message


# --- run_input_of -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("", {}),
        ("{}", {}),
        ('{"topic": "Jinja", "n": 3, "tags": ["a", "b"]}', {"topic": "Jinja", "n": 3, "tags": ["a", "b"]}),
        ('{"topic": "模板 ✓"}', {"topic": "模板 ✓"}),
        ('{"n": 12345678901234567890}', {"n": 12345678901234567890}),  # integers stay exact
    ],
)
def test_the_input_is_a_json_object(text: str, value: dict[str, Any]) -> None:
    assert run_input_of(text) == value


@pytest.mark.parametrize("text", ["[]", "null", '"text"', "3", "true", "  ", "{", "{'single': 1}", "NaN"])
def test_anything_but_a_json_object_is_refused(text: str) -> None:
    with pytest.raises(InvalidPipelineInput) as caught:
        run_input_of(text)
    assert caught.value.message == "a pipeline's input must be a JSON object"


# --- render_step ------------------------------------------------------------------------------------


def test_the_prompt_sees_the_runs_input() -> None:
    rendered = render_step(step("Outline an essay on {{ input.topic }}."), {"topic": "Jinja 模板"}, {})
    assert rendered == ("", "Outline an essay on Jinja 模板.")


def test_the_prompt_sees_earlier_outputs_by_step_name() -> None:
    rendered = render_step(
        step("Expand:\n{{ steps.outline }}", name="draft"), {"topic": "x"}, {"outline": "1. Intro\n2. End"}
    )
    assert rendered == ("", "Expand:\n1. Intro\n2. End")


def test_the_system_prompt_is_rendered_with_the_same_context() -> None:
    rendered = render_step(
        step("Write.", system="You write about {{ input.topic }} after {{ steps.outline }}."),
        {"topic": "bees"},
        {"outline": "an outline"},
    )
    assert rendered == ("You write about bees after an outline.", "Write.")


@pytest.mark.parametrize("system", [None, ""])
def test_without_a_system_template_the_system_prompt_is_empty(system: str | None) -> None:
    assert render_step(step("Go.", system=system), {}, {}) == ("", "Go.")


def test_lists_and_numbers_of_the_input_are_usable() -> None:
    source = "{% for t in input.tags %}#{{ t }} {% endfor %}x{{ input.n + 1 }}"
    assert render_step(step(source), {"tags": ["a", "ü"], "n": 41}, {}) == ("", "#a #ü x42")


def test_text_is_not_html_escaped() -> None:
    assert render_step(step("{{ input.q }}"), {"q": "<b>Tom & Jerry</b>"}, {}) == ("", "<b>Tom & Jerry</b>")


def test_a_single_trailing_newline_of_the_template_is_dropped() -> None:
    assert render_step(step("Hi {{ input.name }}\n"), {"name": "Ana"}, {}) == ("", "Hi Ana")


def test_a_missing_input_variable_names_the_step_and_the_variable() -> None:
    message = template_error(step("{{ input.topic }}"), {}, {})
    assert message == "step 'outline' cannot be rendered: 'dict object' has no attribute 'topic'"


def test_a_later_or_unknown_step_is_not_visible() -> None:
    message = template_error(step("{{ steps.review }}", name="draft"), {}, {"outline": "o"})
    assert message == "step 'draft' cannot be rendered: 'dict object' has no attribute 'review'"


def test_an_error_in_the_system_template_is_the_steps_error_too() -> None:
    message = template_error(step("fine", system="{{ input.missing }}"), {}, {})
    assert message == "step 'outline' cannot be rendered: 'dict object' has no attribute 'missing'"


def test_the_sandbox_refuses_python_internals() -> None:
    message = template_error(step("{{ input.__class__ }}"), {}, {})
    assert (
        message
        == "step 'outline' cannot be rendered: access to attribute '__class__' of 'dict' object is unsafe."
    )


@pytest.mark.parametrize(
    ("source", "run_input", "why"),
    [
        ("{{ input.a + input.b }}", {"a": "x", "b": 1}, 'can only concatenate str (not "int") to str'),
        ("{{ input.n / input.d }}", {"n": 1, "d": 0}, "division by zero"),
        ("{% for t in input.tags %}{{ t }}{% endfor %}", {"tags": 3}, "'int' object is not iterable"),
    ],
    ids=["type", "zero-division", "not-iterable"],
)
def test_input_the_template_cannot_handle_is_the_steps_error_not_an_internal_one(
    source: str, run_input: dict[str, Any], why: str
) -> None:
    assert template_error(step(source), run_input, {}) == f"step 'outline' cannot be rendered: {why}"


@pytest.mark.parametrize(
    ("source", "run_input"),
    [("{{ input.text }}", {"text": "  \n\t"}), ("{% if input.x %}x{% endif %}", {"x": False})],
)
def test_a_prompt_that_renders_blank_is_refused(source: str, run_input: dict[str, Any]) -> None:
    assert template_error(step(source), run_input, {}) == "step 'outline' rendered an empty prompt"


# --- step_spec --------------------------------------------------------------------------------------

PIPELINE = Pipeline(
    steps=[
        step("Outline {{ input.topic }}", name="outline"),
        step(
            "Draft from {{ steps.outline }}",
            system="Write about {{ input.topic }}",
            name="draft",
            model="cloud",
            max_tokens=400,
            temperature=0.0,
        ),
        step("Review {{ steps.draft }} against {{ steps.outline }}", name="review"),
    ]
)


def job(index: int, status: store_pb2.JobStatus, text: str | None = None) -> store_pb2.Job:
    result = None if text is None else json.dumps({"text": text, "tokens": 3})
    return store_pb2.Job(step_index=index, status=status, result_json=result)


def run(input_json: str, *jobs: store_pb2.Job) -> store_pb2.PipelineRun:
    return store_pb2.PipelineRun(pipeline="essay", input_json=input_json, steps=list(jobs))


def test_the_first_step_is_rendered_from_the_input_with_defaults_for_unset_options() -> None:
    spec = step_spec(PIPELINE, run('{"topic": "bees"}'), 0)
    assert (spec.model, spec.system, spec.prompt) == ("", "", "Outline bees")
    assert spec.params.max_tokens == 0  # the model's default
    assert not spec.params.HasField("temperature")


def test_a_later_step_sees_the_outputs_and_carries_its_own_options() -> None:
    spec = step_spec(
        PIPELINE, run('{"topic": "bees"}', job(0, common_pb2.JOB_STATUS_SUCCEEDED, "1. Hive\n2. Honey")), 1
    )
    assert (spec.model, spec.system, spec.prompt) == (
        "cloud",
        "Write about bees",
        "Draft from 1. Hive\n2. Honey",
    )
    assert spec.params.max_tokens == 400
    assert spec.params.HasField("temperature") and spec.params.temperature == 0.0


def test_only_succeeded_steps_before_this_one_are_visible() -> None:
    jobs = [
        job(0, common_pb2.JOB_STATUS_SUCCEEDED, "outline ✓"),
        job(1, common_pb2.JOB_STATUS_SUCCEEDED, "draft ✓"),
        job(2, common_pb2.JOB_STATUS_FAILED),
    ]
    spec = step_spec(PIPELINE, run('{"topic": "t"}', *jobs), 2)
    assert spec.prompt == "Review draft ✓ against outline ✓"
    # Step 1 rendered again (resumed): its own earlier output and later ones are not visible.
    only_outline = step_spec(PIPELINE, run('{"topic": "t"}', *jobs), 1)
    assert only_outline.prompt == "Draft from outline ✓"


def test_an_earlier_step_that_did_not_succeed_is_missing_to_the_template() -> None:
    jobs = [job(0, common_pb2.JOB_STATUS_SUCCEEDED, "o"), job(1, common_pb2.JOB_STATUS_FAILED)]
    with pytest.raises(PipelineTemplateError) as caught:
        step_spec(PIPELINE, run('{"topic": "t"}', *jobs), 2)
    assert caught.value.message == "step 'review' cannot be rendered: 'dict object' has no attribute 'draft'"


def test_a_run_stored_without_input_renders_with_an_empty_one() -> None:
    pipeline = Pipeline(steps=[step("Say hi", name="hi")])
    assert step_spec(pipeline, run(""), 0).prompt == "Say hi"


def test_a_step_naming_knowledge_bases_retrieves_from_them() -> None:
    grounded = Pipeline(steps=[step("Answer {{ input.q }}", knowledge_bases=["vs_1", "vs_2"])])
    spec = step_spec(grounded, run('{"q": "why"}'), 0)
    assert list(spec.knowledge.knowledge_base_ids) == ["vs_1", "vs_2"]
    assert not step_spec(PIPELINE, run('{"topic": "bees"}'), 0).HasField("knowledge")
