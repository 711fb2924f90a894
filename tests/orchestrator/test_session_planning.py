"""Session run planning: the checks before a run, the messages it sends, its input hash, and cache reuse."""

from __future__ import annotations

import re
from typing import Any

import pytest
from llmmesh.common.v1 import common_pb2
from llmmesh.orchestrator.v1 import orchestrator_pb2
from llmmesh.store.v1 import store_pb2

from services.orchestrator.errors import (
    InvalidModelOutput,
    InvalidUserPromptTemplate,
    MissingLlmOptions,
    MissingSystemPrompt,
    NoAnswers,
    VersionNotPublished,
)
from services.orchestrator.sessions import plan_run, render_user_prompt, reusable_result, structured_result

SYSTEM = "You are a careful travel agent."


def session(
    *,
    answers: list[tuple[str, str, str]] | None = None,
    template: str | None = None,
    llm_options: dict[str, Any] | None = None,
    **version: Any,
) -> store_pb2.Session:
    """A runnable session (published, with a system prompt, options and two answers) unless told otherwise."""
    fields: dict[str, Any] = {
        "id": 7,
        "template_name": "trip",
        "number": 3,
        "status": store_pb2.VERSION_STATUS_PUBLISHED,
        "system_prompt": SYSTEM,
        "llm_options": store_pb2.LlmOptions(
            **(llm_options if llm_options is not None else {"model": "local", "max_tokens": 64})
        ),
        **version,
    }
    if template is not None:
        fields["user_prompt_template"] = template
    fields = {key: value for key, value in fields.items() if value is not None}
    pairs = [("city", "City", "Lisbon"), ("days", "Days", "3")] if answers is None else answers
    return store_pb2.Session(
        session_code="S-1",
        version=store_pb2.TemplateVersion(**fields),
        answers=[store_pb2.Answer(option_key=k, label=label, value=v) for k, label, v in pairs],
    )


# --- preconditions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name"),
    [(store_pb2.VERSION_STATUS_DRAFT, "DRAFT"), (store_pb2.VERSION_STATUS_ARCHIVED, "ARCHIVED")],
)
def test_only_a_published_version_runs(status: store_pb2.VersionStatus, name: str) -> None:
    with pytest.raises(VersionNotPublished) as caught:
        plan_run(session(status=status))
    assert caught.value.message == f"version 3 of template 'trip' is {name}; only a PUBLISHED version can run"


@pytest.mark.parametrize("system_prompt", [None, "", "  \n\t"])
def test_a_missing_or_blank_system_prompt_is_refused(system_prompt: str | None) -> None:
    with pytest.raises(MissingSystemPrompt) as caught:
        plan_run(session(system_prompt=system_prompt))
    assert caught.value.message == "version 3 of template 'trip' has no system_prompt"


def test_missing_llm_options_are_refused() -> None:
    bare = session()
    bare.version.ClearField("llm_options")
    with pytest.raises(MissingLlmOptions) as caught:
        plan_run(bare)
    assert caught.value.message == "version 3 of template 'trip' has no llm_options"


def test_llm_options_without_a_model_are_refused() -> None:
    with pytest.raises(MissingLlmOptions) as caught:
        plan_run(session(llm_options={"max_tokens": 64}))
    assert caught.value.message == "version 3 of template 'trip' has no llm_options.model"


def test_a_session_without_answers_is_refused() -> None:
    with pytest.raises(NoAnswers) as caught:
        plan_run(session(answers=[]))
    assert caught.value.message == "session 'S-1' has no answers yet"


def test_the_version_is_checked_before_the_answers() -> None:
    with pytest.raises(VersionNotPublished):
        plan_run(session(answers=[], status=store_pb2.VERSION_STATUS_DRAFT, system_prompt=None))


# --- rendering --------------------------------------------------------------------------------------


def test_without_a_template_each_answer_is_one_line_and_a_blank_value_shows_the_label_alone() -> None:
    version = store_pb2.TemplateVersion()
    answers = [
        store_pb2.Answer(option_key="city", label="City", value="Zürich"),
        store_pb2.Answer(option_key="vegan", label="Vegan meals", value=""),
        store_pb2.Answer(option_key="days", label="Days", value="3"),
    ]
    assert render_user_prompt(version, answers) == "- City: Zürich\n- Vegan meals\n- Days: 3"


def test_a_template_sees_each_answers_key_label_and_value() -> None:
    version = store_pb2.TemplateVersion(
        user_prompt_template="{% for a in answers %}{{ a.key }}={{ a.value }} ({{ a.label }}){{ '; ' if not loop.last }}{% endfor %}"
    )
    answers = [
        store_pb2.Answer(option_key="city", label="City", value="東京"),
        store_pb2.Answer(option_key="days", label="Days", value="3"),
    ]
    assert render_user_prompt(version, answers) == "city=東京 (City); days=3 (Days)"


def test_a_template_without_variables_replaces_the_default_lines() -> None:
    version = store_pb2.TemplateVersion(user_prompt_template="Plan a trip.")
    assert render_user_prompt(version, [store_pb2.Answer(label="City", value="Rome")]) == "Plan a trip."


@pytest.mark.parametrize(
    "template",
    [
        "{{ answers[0].missing_field }}",  # StrictUndefined: a misspelt name is an error
        "{{ nobody }}",
        "{{ answers.__class__.__mro__ }}",  # the sandbox refuses internals
        "{% for a in answers %}",  # syntax
    ],
)
def test_a_template_that_cannot_render_is_a_precondition_failure(template: str) -> None:
    with pytest.raises(InvalidUserPromptTemplate) as caught:
        plan_run(session(template=template))
    assert caught.value.message.startswith(
        "the user_prompt_template of version 3 of 'trip' cannot be rendered: "
    )


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("{{ answers[1].value + 1 }}", 'can only concatenate str (not "int") to str'),
        ("{{ (answers[1].value | int) / 0 }}", "division by zero"),
    ],
    ids=["type", "zero-division"],
)
def test_answers_the_template_cannot_handle_are_a_precondition_failure_not_an_internal_error(
    template: str, why: str
) -> None:
    with pytest.raises(InvalidUserPromptTemplate) as caught:
        plan_run(session(template=template))
    assert caught.value.message == (
        f"the user_prompt_template of version 3 of 'trip' cannot be rendered: {why}"
    )


@pytest.mark.parametrize(
    "template",
    ["", "   \n", "{% for a in answers if a.value %}{{ a.value }}{% endfor %}"],
    ids=["empty", "blank", "only-blank-answers"],
)
def test_a_template_that_renders_no_text_is_a_precondition_failure(template: str) -> None:
    with pytest.raises(InvalidUserPromptTemplate) as caught:
        plan_run(session(template=template, answers=[("notes", "Notes", "")]))
    assert caught.value.message == "the user_prompt_template of version 3 of 'trip' rendered an empty prompt"


# --- the plan ---------------------------------------------------------------------------------------


def test_the_plan_sends_the_system_prompt_then_the_rendered_answers() -> None:
    plan = plan_run(session())
    assert [(m.role, m.content) for m in plan.messages] == [
        (common_pb2.ROLE_SYSTEM, SYSTEM),
        (common_pb2.ROLE_USER, "- City: Lisbon\n- Days: 3"),
    ]
    assert (plan.spec.model, plan.spec.system, plan.spec.prompt) == (
        "local",
        SYSTEM,
        "- City: Lisbon\n- Days: 3",
    )
    assert list(plan.spec.messages) == []
    assert not plan.spec.raw


def test_sampling_options_are_carried_and_unset_ones_stay_unset() -> None:
    params = plan_run(session()).spec.params
    assert params.max_tokens == 64
    assert not params.HasField("temperature")
    assert not params.HasField("top_p")
    assert not params.HasField("seed")
    assert list(params.stop) == []

    options = {
        "model": "m",
        "max_tokens": 10,
        "temperature": 0.0,
        "top_p": 0.5,
        "seed": 42,
        "stop": ["\n\n", "END"],
    }
    params = plan_run(session(llm_options=options)).spec.params
    assert params.max_tokens == 10
    assert params.HasField("temperature") and params.temperature == 0.0
    assert params.top_p == 0.5
    assert params.HasField("seed") and params.seed == 42
    assert list(params.stop) == ["\n\n", "END"]


# --- the input hash ---------------------------------------------------------------------------------


def test_the_input_hash_is_a_sha256_hex_digest() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", plan_run(session()).input_hash)


def test_the_input_hash_is_stable_across_releases() -> None:
    # Every stored result is keyed by this hash: a change here silently invalidates all of them.
    # It is sha256 of the sorted-key JSON of {version_id, messages as [role, content], llm_options}.
    assert plan_run(session()).input_hash == (
        "dd7ef7ed655f8c4b510a0081e301bd16173bd0afabf2519eec5dbfadac1022bb"
    )


def test_the_same_inputs_give_the_same_hash() -> None:
    assert plan_run(session()).input_hash == plan_run(session()).input_hash


@pytest.mark.parametrize(
    "changed",
    [
        {"answers": [("city", "City", "Porto"), ("days", "Days", "3")]},  # a value
        {"answers": [("city", "Town", "Lisbon"), ("days", "Days", "3")]},  # a label, rendered into the prompt
        {"answers": [("days", "Days", "3"), ("city", "City", "Lisbon")]},  # their order
        {"answers": [("city", "City", "Lisbon")]},  # one fewer
        {"system_prompt": SYSTEM + " "},
        {"id": 8},  # another version, even with the same text
        {"template": "City: {{ answers[0].value }}"},
        {"llm_options": {"model": "cloud", "max_tokens": 64}},
        {"llm_options": {"model": "local", "max_tokens": 65}},
        {"llm_options": {"model": "local", "max_tokens": 64, "temperature": 0.0}},  # 0.0 is not unset
        {"llm_options": {"model": "local", "max_tokens": 64, "stop": ["END"]}},
        {"llm_options": {"model": "local", "max_tokens": 64, "seed": 1}},
    ],
    ids=lambda changed: ",".join(f"{k}={v}" for k, v in changed.items())[:60],
)
def test_any_input_that_reaches_the_model_changes_the_hash(changed: dict[str, Any]) -> None:
    assert plan_run(session(**changed)).input_hash != plan_run(session()).input_hash


def test_what_does_not_reach_the_model_leaves_the_hash_alone() -> None:
    base = plan_run(session()).input_hash
    other = session(template_name="renamed", number=9)
    other.session_code = "S-2"
    other.created_at.FromSeconds(1_700_000_000)
    other.latest_result.input_hash = "old"
    # Without a template the option keys are not rendered: same prompt, same hash.
    other.answers[0].option_key = "town"
    assert plan_run(other).input_hash == base


def test_a_runs_sampling_override_is_what_it_samples_with_and_part_of_the_hash() -> None:
    version = {"model": "local", "max_tokens": 64, "temperature": 0.7, "seed": 1}
    base = plan_run(session(llm_options=version))
    fresh = plan_run(session(llm_options=version), orchestrator_pb2.SamplingOverride(seed=2))
    assert (fresh.spec.params.seed, fresh.spec.params.temperature) == (2, pytest.approx(0.7))
    assert fresh.input_hash != base.input_hash
    # the override is the same inputs as a version that had those options
    assert fresh.input_hash == plan_run(session(llm_options={**version, "seed": 2})).input_hash
    cooler = plan_run(session(llm_options=version), orchestrator_pb2.SamplingOverride(temperature=0))
    assert cooler.spec.params.HasField("temperature") and cooler.spec.params.temperature == 0
    assert cooler.input_hash == plan_run(session(llm_options={**version, "temperature": 0})).input_hash
    # an empty override is no override
    assert plan_run(session(llm_options=version), orchestrator_pb2.SamplingOverride()).input_hash == (
        base.input_hash
    )


def test_a_grounded_plan_sends_and_hashes_the_retrieved_chunks() -> None:
    plan = plan_run(session(llm_options={"model": "local", "knowledge_bases": ["kb_1"]}))
    assert plan.spec.knowledge.knowledge_base_ids == ["kb_1"]

    def grounded(chunks: str) -> Any:
        spec = orchestrator_pb2.GenerationSpec()
        spec.CopyFrom(plan.spec)
        spec.ClearField("knowledge")
        spec.system = f"{SYSTEM}\n\n{chunks}"
        return plan.grounded(spec)

    same, again, other = (
        grounded("[1] a.md: open at 9"),
        grounded("[1] a.md: open at 9"),
        grounded("[1] b.md"),
    )
    assert same.messages[0].content == f"{SYSTEM}\n\n[1] a.md: open at 9"
    assert [m.content for m in same.messages[1:]] == [m.content for m in plan.messages[1:]]
    assert same.spec.system == same.messages[0].content and not same.spec.HasField("knowledge")
    assert same.input_hash == again.input_hash  # the same chunks: the stored result is reused
    assert len({plan.input_hash, same.input_hash, other.input_hash}) == 3


# --- cache reuse ------------------------------------------------------------------------------------


def with_result(input_hash: str) -> store_pb2.Session:
    stored = session()
    stored.latest_result.CopyFrom(store_pb2.SessionResult(llm_result="Go to Belém.", input_hash=input_hash))
    return stored


def test_a_stored_result_of_the_same_inputs_is_reused() -> None:
    stored = with_result(plan_run(session()).input_hash)
    reused = reusable_result(stored, plan_run(stored), force_regenerate=False)
    assert reused is not None
    assert reused.llm_result == "Go to Belém."


def test_force_regenerate_never_reuses() -> None:
    stored = with_result(plan_run(session()).input_hash)
    assert reusable_result(stored, plan_run(stored), force_regenerate=True) is None


def test_a_result_of_other_inputs_is_not_reused() -> None:
    stored = with_result(plan_run(session(answers=[("city", "City", "Porto")])).input_hash)
    assert reusable_result(stored, plan_run(stored), force_regenerate=False) is None


def test_without_a_stored_result_there_is_nothing_to_reuse() -> None:
    fresh = session()
    assert reusable_result(fresh, plan_run(fresh), force_regenerate=False) is None


def test_a_stored_result_without_a_hash_is_not_reused() -> None:
    stored = with_result("")
    assert reusable_result(stored, plan_run(stored), force_regenerate=False) is None


# --- structured results -----------------------------------------------------------------------------

SCHEMA = '{"type": "object", "properties": {"city": {"type": "string"}}}'


def test_a_json_schema_becomes_the_runs_constraint_and_part_of_its_inputs() -> None:
    plain = plan_run(session())
    structured = plan_run(session(llm_options={"model": "local", "max_tokens": 64, "json_schema": SCHEMA}))
    assert not plain.spec.HasField("constraint")
    constraint = structured.spec.constraint.json_schema
    assert (constraint.schema, constraint.strict, constraint.name) == (SCHEMA, True, "trip")
    assert structured.input_hash != plain.input_hash


def test_a_structured_result_is_stored_compact_unless_it_was_cut_short() -> None:
    plan = plan_run(session(llm_options={"model": "local", "max_tokens": 64, "json_schema": SCHEMA}))
    done = common_pb2.GenerationResult(
        text='{ "city": "Lisbon" }', model="local", finish_reason=common_pb2.FINISH_REASON_STOP
    )
    assert structured_result(plan, done) == '{"city":"Lisbon"}'
    cut = common_pb2.GenerationResult(
        text='{"city": "Lis', model="local", finish_reason=common_pb2.FINISH_REASON_LENGTH
    )
    with pytest.raises(InvalidModelOutput, match=r"reached max_tokens \(64\) before the JSON result ended"):
        structured_result(plan, cut)
